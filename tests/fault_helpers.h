// Helpers for the fault suites (test_faults.cpp, test_bad_input.cpp): start the real executable as a child we can
// signal, wait for it with a deadline, and fingerprint a folder to prove that nothing in it was modified.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/helpers.h"

namespace streamsink::testing {

// Splits on spaces (the test paths hold none).
inline std::vector<std::string> split_args(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// Starts `streamsink ARGS` with extra environment variables, stdout and stderr into `log`; in its own process
// group (so a test can stop a launcher and its ranks together). Returns the pid.
inline pid_t spawn_streamsink(const std::string& args, const std::vector<std::pair<std::string, std::string>>& env,
                              const std::string& log) {
  // Everything is built before fork(): the child only calls async-signal-safe functions (this process may have
  // LibTorch threads).
  const auto argv_s = split_args(args);
  const std::string binary = streamsink_binary();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool overridden = false;
    for (const auto& [k, v] : env) overridden |= kv.rfind(k + "=", 0) == 0;
    if (!overridden) env_s.push_back(kv);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& kv : env_s) envp.push_back(kv.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execve(binary.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so a kill(-pid) right after this returns finds the group
  return pid;
}

// The exit code (or 128+signal); -1 while still running (no wait).
inline int poll_exit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits at most `seconds`; on timeout kills the child's process group and returns -2 (a hang).
inline int wait_exit(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const int rc = poll_exit(pid);
    if (rc >= 0) return rc;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  return -2;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// path (relative to root) -> contents, for every regular file under root.
inline std::map<std::string, std::string> snapshot(const std::filesystem::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root))
    if (e.is_regular_file()) out[std::filesystem::relative(e.path(), root).string()] = slurp(e.path().string());
  return out;
}

// "" when every file of `before` is still there with the same bytes; else the first that changed or went.
inline std::string modified_file(const std::map<std::string, std::string>& before, const std::filesystem::path& root) {
  const auto after = snapshot(root);
  for (const auto& [path, bytes] : before) {
    auto it = after.find(path);
    if (it == after.end()) return path + " (removed)";
    if (it->second != bytes) return path + " (modified)";
  }
  return "";
}

}  // namespace streamsink::testing
