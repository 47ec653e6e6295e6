// Helpers shared by the test suites: running the real executable, temporary folders, tiny models.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <initializer_list>
#include <vector>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "common/error.h"

namespace streamsink::testing {

struct RunResult {
  int exit_code;       // the process's exit status, or 128+signal when killed
  std::string output;  // stdout and stderr together
};

// The executable under test and the source tree, as built; $STREAMSINK_BIN and $STREAMSINK_SOURCE_DIR override
// them, so that test binaries built on one machine run on another (scripts/gpu_lease.sh carries them to a GPU).
inline std::string streamsink_binary() {
  if (const char* p = std::getenv("STREAMSINK_BIN"); p && *p) return p;
  return STREAMSINK_BINARY;
}
inline std::string source_dir() {
  if (const char* p = std::getenv("STREAMSINK_SOURCE_DIR"); p && *p) return p;
  return STREAMSINK_SOURCE_DIR;
}

// Runs a shell command line and collects what it prints (ARGS is pasted as is: quote what needs it); stderr is
// collected too unless `merge_stderr` is false (then it goes wherever the command line sends it).
inline RunResult run_shell(const std::string& cmd, bool merge_stderr = true) {
  RunResult r{-1, {}};
  FILE* p = popen((merge_stderr ? cmd + " 2>&1" : cmd).c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Runs `streamsink ARGS` through the shell.
inline RunResult run_streamsink(const std::string& args) { return run_shell(streamsink_binary() + " " + args); }

// A fresh, empty temporary folder, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "streamsink-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// While alive, this process's writes to regular files stop at `bytes` (RLIMIT_FSIZE): a write past it fails with
// EFBIG, as a full disk fails with ENOSPC, and SIGXFSZ is ignored so that the write returns the error instead of
// killing the process. Both are restored on destruction.
class ScopedFileSizeLimit {
 public:
  explicit ScopedFileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old_;
    lim.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~ScopedFileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    signal(SIGXFSZ, old_handler_);
  }
  ScopedFileSizeLimit(const ScopedFileSizeLimit&) = delete;
  ScopedFileSizeLimit& operator=(const ScopedFileSizeLimit&) = delete;

 private:
  rlimit old_{};
  sighandler_t old_handler_ = SIG_DFL;
};

// The names of the files and folders directly in `dir`, sorted.
inline std::vector<std::string> entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The set-up's Python (scripts/setup.sh): $STREAMSINK_PYTHON, else $STREAMSINK_CACHE/venv, else
// ~/.cache/streamsink/venv. It may not exist; callers check.
inline std::string venv_python() {
  if (const char* p = std::getenv("STREAMSINK_PYTHON"); p && *p) return p;
  if (const char* c = std::getenv("STREAMSINK_CACHE"); c && *c) return std::string(c) + "/venv/bin/python";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/streamsink/venv/bin/python";
}

// Expects `f` to throw streamsink::Error with a message that contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

}  // namespace streamsink::testing
