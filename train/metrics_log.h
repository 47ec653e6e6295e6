// metrics.jsonl: one JSON object per line (step, loss, lr, grad norm, tokens/s, MFU, eval results), flushed per
// line. On resume, lines past the resumed step are dropped so the file reads as one uninterrupted run.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

namespace streamsink {

class MetricsLog {
 public:
  // Opens PATH for appending; with resume_step >= 0, first keeps only the lines whose step <= resume_step.
  MetricsLog(const std::string& path, int64_t resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  FILE* f_ = nullptr;
};

}  // namespace streamsink
