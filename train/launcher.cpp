// The local launcher: fork/exec N ranks, relay their output with a rank prefix, forward signals, and stop the job
// when one rank fails. POSIX only (fork, pipes, poll, waitpid).
#include "train/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/error.h"
#include "common/interrupt.h"

extern char** environ;

namespace streamsink {

namespace {

using Clock = std::chrono::steady_clock;

// The process-wide state a signal handler can touch: the last SIGINT/SIGTERM received, and how many requests. A
// signal within kSignalRepeatNs (a second) of the first is the same request delivered twice (`timeout` and `scancel`
// signal the launcher and its process group), so it is not counted: only a user's later second signal kills. The
// launcher is one thread, and SIGINT/SIGTERM are masked while its handler runs (sa_mask), so handlers never overlap.
volatile sig_atomic_t g_received_signal = 0;
volatile sig_atomic_t g_signal_count = 0;
std::atomic<int64_t> g_first_signal_ns{0};
static_assert(std::atomic<int64_t>::is_always_lock_free);
void on_signal(int sig) {
  const int64_t now = monotonic_ns_signal_safe();
  if (g_signal_count > 0 && now - g_first_signal_ns.load() < kSignalRepeatNs) return;
  if (g_signal_count == 0) g_first_signal_ns.store(now);
  g_received_signal = sig;
  g_signal_count = g_signal_count + 1;
}

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

void say(const std::string& line) { write_all(STDERR_FILENO, "streamsink launch: " + line + "\n"); }

// One stream (stdout or stderr) of one rank, relayed line by line with a prefix.
struct Stream {
  int fd = -1;         // read end of the pipe; -1 once closed
  int out = -1;        // where the lines go (the launcher's stdout or stderr)
  std::string buffer;  // an incomplete last line
};

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;  // waitpid status once it has exited
  Stream streams[2];
};

void relay(Stream& s, const std::string& prefix, bool at_eof) {
  size_t start = 0;
  for (;;) {
    size_t nl = s.buffer.find('\n', start);
    if (nl == std::string::npos) break;
    write_all(s.out, prefix + s.buffer.substr(start, nl - start + 1));
    start = nl + 1;
  }
  s.buffer.erase(0, start);
  if (at_eof && !s.buffer.empty()) {
    write_all(s.out, prefix + s.buffer + "\n");
    s.buffer.clear();
  }
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    case SIGQUIT: return "SIGQUIT";
    default: return "signal";
  }
}

void signal_all(std::vector<Child>& children, int sig) {
  for (auto& c : children)
    if (c.running) ::kill(c.pid, sig);
}

}  // namespace

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + signal_name(sig) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

int free_local_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("launch: cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw Error("launch: cannot find a free port on 127.0.0.1: " + why + " (pass --master-port)");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch(const LaunchConfig& cfg) {
  if (cfg.nproc < 1) throw Error("launch: --nproc must be at least 1");
  if (cfg.program.empty()) throw Error("launch: no program to run");
  if (::access(cfg.program.c_str(), X_OK) != 0)
    throw Error("launch: " + cfg.program + ": not an executable file (" + std::strerror(errno) + ")");
  const int port = cfg.master_port > 0 ? cfg.master_port : free_local_port();

  // Everything the children need is built before fork(): the child only calls async-signal-safe functions.
  std::vector<std::string> base_env;
  const char* overridden[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=",
                              "MASTER_PORT=", "STREAMSINK_LAUNCHER=", "TORCHELASTIC_USE_AGENT_STORE=",
                              "GROUP_RANK=", "ROLE_RANK="};
  bool has_omp = false;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    bool skip = false;
    for (const char* o : overridden) skip = skip || kv.rfind(o, 0) == 0;
    has_omp = has_omp || kv.rfind("OMP_NUM_THREADS=", 0) == 0;
    if (!skip) base_env.push_back(kv);
  }
  if (!has_omp && cfg.nproc > 1) {
    // As torchrun: N ranks each using every core oversubscribes the CPU; share the cores out.
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    base_env.push_back("OMP_NUM_THREADS=" + std::to_string(std::max(1u, hw / static_cast<unsigned>(cfg.nproc))));
  }
  std::vector<std::vector<std::string>> envs(cfg.nproc, base_env);
  for (int r = 0; r < cfg.nproc; ++r) {
    auto& e = envs[r];
    e.push_back("RANK=" + std::to_string(r));
    e.push_back("WORLD_SIZE=" + std::to_string(cfg.nproc));
    e.push_back("LOCAL_RANK=" + std::to_string(r));
    e.push_back("LOCAL_WORLD_SIZE=" + std::to_string(cfg.nproc));
    e.push_back("GROUP_RANK=0");
    e.push_back("MASTER_ADDR=127.0.0.1");
    e.push_back("MASTER_PORT=" + std::to_string(port));
    e.push_back("STREAMSINK_LAUNCHER=streamsink-launch");
  }
  std::vector<std::vector<char*>> envps(cfg.nproc);
  for (int r = 0; r < cfg.nproc; ++r) {
    for (auto& kv : envs[r]) envps[r].push_back(kv.data());
    envps[r].push_back(nullptr);
  }
  std::vector<std::string> argv_storage;
  argv_storage.push_back(cfg.program);
  for (const auto& a : cfg.args) argv_storage.push_back(a);
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Signals: remember SIGINT/SIGTERM and forward them from the loop.
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);  // one handler at a time
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  g_received_signal = 0;
  g_signal_count = 0;
  g_first_signal_ns.store(0);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  struct SignalRestore {
    struct sigaction i, t;
    ~SignalRestore() {
      ::sigaction(SIGINT, &i, nullptr);
      ::sigaction(SIGTERM, &t, nullptr);
    }
  } restore{old_int, old_term};

  std::vector<Child> children(cfg.nproc);
  const pid_t parent = ::getpid();
  for (int r = 0; r < cfg.nproc; ++r) {
    Child& c = children[r];
    c.rank = r;
    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    if (cfg.prefix_output) {
      for (auto& p : pipes)
        if (::pipe2(p, O_CLOEXEC) != 0) {
          signal_all(children, SIGKILL);
          throw Error(std::string("launch: pipe: ") + std::strerror(errno));
        }
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      signal_all(children, SIGKILL);
      throw Error("launch: fork for rank " + std::to_string(r) + ": " + why);
    }
    if (pid == 0) {
      // Child: die with the launcher, wire up the pipes, exec.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      // Forwarded signals must work even where the launcher started with them ignored (e.g. under nohup or `&`).
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigemptyset(&dfl.sa_mask);
      ::sigaction(SIGINT, &dfl, nullptr);
      ::sigaction(SIGTERM, &dfl, nullptr);
      if (cfg.prefix_output) {
        ::dup2(pipes[0][1], STDOUT_FILENO);
        ::dup2(pipes[1][1], STDERR_FILENO);
      }
      ::execve(argv[0], argv.data(), envps[r].data());
      const char msg[] = "streamsink launch: exec failed\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      ::_exit(127);
    }
    c.pid = pid;
    c.running = true;
    if (cfg.prefix_output) {
      for (int s = 0; s < 2; ++s) {
        ::close(pipes[s][1]);
        c.streams[s].fd = pipes[s][0];
        c.streams[s].out = s == 0 ? STDOUT_FILENO : STDERR_FILENO;
      }
    }
  }

  int first_failed = -1;    // rank that failed first (its own failure, not one we caused)
  int interrupted = 0;      // signal the launcher got
  bool stopping = false;    // SIGTERM sent to the remaining ranks
  bool killed = false;      // SIGKILL sent
  Clock::time_point kill_at = Clock::time_point::max();  // when the grace after a stop runs out
  Clock::time_point all_exited_at{};
  int running = cfg.nproc;
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(cfg.grace_seconds * 1000));

  for (;;) {
    // Relay output.
    std::vector<pollfd> fds;
    std::vector<Stream*> owners;
    std::vector<int> owner_rank;
    for (auto& c : children)
      for (auto& s : c.streams)
        if (s.fd >= 0) {
          fds.push_back({s.fd, POLLIN, 0});
          owners.push_back(&s);
          owner_rank.push_back(c.rank);
        }
    if (running == 0 && (fds.empty() || Clock::now() - all_exited_at > std::chrono::seconds(2))) break;
    if (!fds.empty()) {
      int n = ::poll(fds.data(), fds.size(), 100);
      if (n > 0) {
        for (size_t i = 0; i < fds.size(); ++i) {
          if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          char buf[65536];
          ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
          const std::string prefix = "[rank " + std::to_string(owner_rank[i]) + "] ";
          if (got > 0) {
            owners[i]->buffer.append(buf, static_cast<size_t>(got));
            relay(*owners[i], prefix, false);
          } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
            relay(*owners[i], prefix, true);
            ::close(owners[i]->fd);
            owners[i]->fd = -1;
          }
        }
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    // Signals to the launcher go to every rank. The ranks may need a while to stop well (a trainer finishes its step
    // and writes a checkpoint), so no grace timer runs out on them: a second signal kills them. A timer that a
    // failed rank has already started keeps running (the others may be waiting for it in a collective).
    if (g_received_signal != 0 && interrupted == 0) {
      interrupted = g_received_signal;
      say(std::string("got ") + signal_name(interrupted) +
          ", forwarding it to the ranks (a second one, a second or more later, kills them)");
      signal_all(children, interrupted);
      if (!stopping) kill_at = Clock::time_point::max();
      stopping = true;
    } else if (interrupted != 0 && g_signal_count > 1 && !killed && running > 0) {
      say("got a second signal: sending SIGKILL to the ranks");
      signal_all(children, SIGKILL);
      killed = true;
    }

    // Reap.
    for (auto& c : children) {
      if (!c.running) continue;
      int status = 0;
      pid_t w = ::waitpid(c.pid, &status, WNOHANG);
      if (w != c.pid) continue;
      c.running = false;
      c.status = status;
      if (--running == 0) all_exited_at = Clock::now();
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (ok || killed) continue;
      // A rank that ends unsuccessfully: the others may be waiting for it in a collective, so they get SIGTERM (or,
      // after a forwarded signal, already have one) and the grace timer, then SIGKILL. After a forwarded signal, a
      // rank that ends by that signal (or exits 128 + it, as shells do) did as it was told: not a failure.
      const bool by_our_signal = interrupted != 0 && ((WIFSIGNALED(status) && WTERMSIG(status) == interrupted) ||
                                                      (WIFEXITED(status) && WEXITSTATUS(status) == 128 + interrupted));
      if (first_failed < 0 && !by_our_signal) {
        first_failed = c.rank;
        say("rank " + std::to_string(c.rank) + " (pid " + std::to_string(c.pid) + ") " + describe_exit(status) +
            "; stopping the other ranks");
      }
      if (running > 0) {
        if (!stopping) signal_all(children, SIGTERM);
        stopping = true;
        kill_at = std::min(kill_at, Clock::now() + grace);
      }
    }
    if (stopping && !killed && running > 0 && Clock::now() >= kill_at) {
      say("ranks still running " + std::to_string(cfg.grace_seconds) + " s after SIGTERM: sending SIGKILL");
      signal_all(children, SIGKILL);
      killed = true;
    }
  }
  for (auto& c : children)
    for (auto& s : c.streams)
      if (s.fd >= 0) {
        relay(s, "[rank " + std::to_string(c.rank) + "] ", true);
        ::close(s.fd);
        s.fd = -1;
      }

  if (first_failed >= 0) {
    say("failed: rank " + std::to_string(first_failed) + " " + describe_exit(children[first_failed].status));
    return 1;
  }
  if (interrupted != 0) return 128 + interrupted;
  return 0;
}

}  // namespace streamsink
