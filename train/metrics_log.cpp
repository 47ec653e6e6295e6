#include "train/metrics_log.h"

#include <filesystem>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"

namespace streamsink {

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  if (resume_step >= 0 && std::filesystem::exists(path)) {
    std::istringstream in(read_file(path));
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        auto j = nlohmann::json::parse(line);
        if (j.value("step", int64_t{0}) <= resume_step) kept += line + "\n";
      } catch (const nlohmann::json::exception&) {
        // a line torn by a crash: dropped
      }
    }
    write_file_atomic(path, kept);
  }
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) fail(path, "cannot open for appending");
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    fail(path_, "write failed (disk full?)");
}

}  // namespace streamsink
