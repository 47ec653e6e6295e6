#include "common/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace streamsink {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(getpid());
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail(path_, std::string("cannot open for writing: ") + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (n > 0 && std::fwrite(data, 1, n, f_) != n) fail(path_, std::string("write failed: ") + std::strerror(errno));
}

void AtomicFile::commit() {
  if (std::fflush(f_) != 0 || fsync(fileno(f_)) != 0)
    fail(path_, std::string("flush failed: ") + std::strerror(errno));
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    std::remove(tmp_.c_str());
    fail(path_, std::string("close failed: ") + std::strerror(errno));
  }
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    fail(path_, std::string("rename failed: ") + std::strerror(errno));
  }
}

StagingDir::StagingDir(std::string out, const std::string& what) : out_(std::move(out)) {
  namespace fs = std::filesystem;
  if (out_.empty()) throw Error(what + ": no output folder (--out)");
  if (fs::exists(out_) && !(fs::is_directory(out_) && fs::is_empty(out_)))
    fail(out_, "already exists and is not empty; remove it or choose another --out");
  tmp_ = out_ + ".tmp." + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  if (ec) fail(tmp_, "cannot create: " + ec.message());
}

StagingDir::~StagingDir() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
}

void StagingDir::commit() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(out_)) fs::remove(out_, ec);  // the empty folder the constructor accepted
  fs::rename(tmp_, out_, ec);
  if (ec) fail(out_, "cannot rename the finished folder into place: " + ec.message());
  committed_ = true;
}

void check_output_folder(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) fail(path, flag + ": its folder " + parent.string() + " does not exist");
  if (access(parent.c_str(), W_OK) != 0) fail(path, flag + ": its folder " + parent.string() + " is not writable");
  if (fs::is_directory(path, ec)) fail(path, flag + ": is a folder; give a file name");
}

void prepare_output_folder(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec0;
  if (fs::path(path).filename().empty() || fs::is_directory(path, ec0))  // before any folder is made for it
    fail(path, flag + ": is a folder; give a file name");
  if (const fs::path parent = fs::path(path).parent_path(); !parent.empty()) {
    std::error_code ec;
    if (!fs::is_directory(parent, ec) && !fs::create_directories(parent, ec) && ec)
      fail(path, flag + ": cannot create its folder " + parent.string() + ": " + ec.message());
  }
  check_output_folder(path, flag);
}

std::string read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "no such file");
  if (fs::is_directory(path, ec)) fail(path, "is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace streamsink
