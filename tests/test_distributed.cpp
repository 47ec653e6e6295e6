// ctest-labels: slow
// train/distributed.* and train/launcher.*: environment detection (torchrun, SLURM), a world of one, and real
// two-process jobs on CPU through Gloo (tests/dist_worker.cpp): collectives against closed forms, a rank that dies
// makes the survivor fail with a message naming it within the timeout, and `streamsink launch` end to end.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "common/error.h"
#include "tests/helpers.h"
#include "train/distributed.h"
#include "train/launcher.h"

extern char** environ;

namespace {

using streamsink::DistEnv;
using streamsink::detect_dist_env;
using streamsink::testing::RunResult;
using streamsink::testing::run_streamsink;
using streamsink::testing::TempDir;

// Sets environment variables for one test and restores the previous values (and clears every launcher variable
// first, so that the test's own environment does not leak in).
class EnvGuard {
 public:
  EnvGuard() {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
                          "TORCHELASTIC_RESTART_COUNT", "STREAMSINK_LAUNCHER", "SLURM_PROCID", "SLURM_NTASKS",
                          "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                          "SLURM_JOB_ID", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE",
                          "SLURM_TASKS_PER_NODE", "SLURM_NODEID", "SLURM_CPU_BIND_TYPE"})
      unset(k);
  }
  ~EnvGuard() {
    for (auto& [k, v] : saved_) {
      if (v) setenv(k.c_str(), v->c_str(), 1);
      else unsetenv(k.c_str());
    }
  }
  void set(const std::string& k, const std::string& v) {
    remember(k);
    setenv(k.c_str(), v.c_str(), 1);
  }
  void unset(const std::string& k) {
    remember(k);
    unsetenv(k.c_str());
  }

 private:
  void remember(const std::string& k) {
    if (saved_.count(k)) return;
    const char* v = getenv(k.c_str());
    saved_[k] = v ? std::optional<std::string>(v) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(DetectDistEnv, SingleProcessByDefault) {
  EnvGuard g;
  DistEnv e = detect_dist_env();
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.launcher, "single");
}

TEST(DetectDistEnv, Torchrun) {
  EnvGuard g;
  g.set("RANK", "3");
  g.set("WORLD_SIZE", "8");
  g.set("LOCAL_RANK", "1");
  g.set("MASTER_ADDR", "node17");
  g.set("MASTER_PORT", "29611");
  g.set("TORCHELASTIC_USE_AGENT_STORE", "True");
  g.set("TORCHELASTIC_RESTART_COUNT", "2");
  DistEnv e = detect_dist_env();
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node17");
  EXPECT_EQ(e.master_port, 29611);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.restart_count, 2);
  EXPECT_EQ(e.launcher, "torchrun");

  g.set("TORCHELASTIC_USE_AGENT_STORE", "False");
  g.set("STREAMSINK_LAUNCHER", "streamsink-launch");
  e = detect_dist_env();
  EXPECT_FALSE(e.agent_store);
  EXPECT_EQ(e.launcher, "streamsink-launch");
}

TEST(DetectDistEnv, TorchrunDefaultsAndErrors) {
  EnvGuard g;
  g.set("RANK", "0");
  g.set("WORLD_SIZE", "2");
  DistEnv e = detect_dist_env();
  EXPECT_EQ(e.master_addr, "127.0.0.1");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_EQ(e.local_rank, 0);

  g.set("RANK", "abc");
  try {
    detect_dist_env();
    FAIL() << "RANK=abc was accepted";
  } catch (const streamsink::Error& err) {
    EXPECT_NE(std::string(err.what()).find("RANK='abc'"), std::string::npos) << err.what();
  }
  g.set("RANK", "2");  // outside a world of 2
  EXPECT_THROW(detect_dist_env(), streamsink::Error);
  g.unset("WORLD_SIZE");
  try {
    detect_dist_env();
    FAIL() << "RANK without WORLD_SIZE was accepted";
  } catch (const streamsink::Error& err) {
    EXPECT_NE(std::string(err.what()).find("WORLD_SIZE"), std::string::npos) << err.what();
  }
}

// The node's rank count, from each launcher, and the CPU threads each rank takes (review, session 8: under srun
// every rank took all of the node's cores).
TEST(DetectDistEnv, LocalWorldSizeAndThreadsPerRank) {
  EnvGuard g;
  EXPECT_EQ(detect_dist_env().local_world_size, 1);
  g.set("RANK", "1");
  g.set("WORLD_SIZE", "8");
  g.set("LOCAL_WORLD_SIZE", "4");
  EXPECT_EQ(detect_dist_env().local_world_size, 4);
  EXPECT_FALSE(detect_dist_env().cpus_bound);
  g.unset("RANK");
  g.unset("WORLD_SIZE");
  g.unset("LOCAL_WORLD_SIZE");
  g.set("SLURM_PROCID", "0");
  g.set("SLURM_NTASKS", "7");
  g.set("SLURM_JOB_NODELIST", "n[1-3]");
  g.set("SLURM_NTASKS_PER_NODE", "8");         // the job's request ...
  EXPECT_EQ(detect_dist_env().local_world_size, 8);
  g.set("SLURM_STEP_TASKS_PER_NODE", "2(x3),1");  // ... but the step's own count wins, this node's entry
  g.set("SLURM_NODEID", "3");
  EXPECT_EQ(detect_dist_env().local_world_size, 1);
  g.set("SLURM_NODEID", "1");
  EXPECT_EQ(detect_dist_env().local_world_size, 2);
  g.set("SLURM_CPU_BIND_TYPE", "mask_cpu:");
  EXPECT_TRUE(detect_dist_env().cpus_bound);
  g.set("SLURM_CPU_BIND_TYPE", "none");
  EXPECT_FALSE(detect_dist_env().cpus_bound);

  EXPECT_EQ(streamsink::slurm_tasks_on_node("4", 0), 4);
  EXPECT_EQ(streamsink::slurm_tasks_on_node("3(x2),5", 2), 5);
  EXPECT_EQ(streamsink::slurm_tasks_on_node("3(x2),5", 3), 0);  // no such node
  EXPECT_EQ(streamsink::slurm_tasks_on_node("x(2)", 0), 0);
  EXPECT_EQ(streamsink::cpu_threads_per_rank(16, 4, false), 4);  // the set is shared by the node's ranks
  EXPECT_EQ(streamsink::cpu_threads_per_rank(4, 4, true), 4);    // bound: the rank's own CPUs
  EXPECT_EQ(streamsink::cpu_threads_per_rank(2, 4, false), 1);   // never 0
}

TEST(DetectDistEnv, SlurmNodeLists) {
  EXPECT_EQ(streamsink::first_slurm_host("gpu[01-04]"), "gpu01");
  EXPECT_EQ(streamsink::first_slurm_host("a,b"), "a");
  EXPECT_EQ(streamsink::first_slurm_host("n[3,5-7]"), "n3");
  EXPECT_EQ(streamsink::first_slurm_host("node[01-04],x"), "node01");
  EXPECT_EQ(streamsink::first_slurm_host("single"), "single");
  EXPECT_EQ(streamsink::first_slurm_host("rack[2-3]-n[007-010]"), "rack2-n007");
}

TEST(DetectDistEnv, Slurm) {
  EnvGuard g;
  g.set("SLURM_PROCID", "5");
  g.set("SLURM_NTASKS", "8");
  g.set("SLURM_LOCALID", "1");
  g.set("SLURM_JOB_NODELIST", "gpu[01-04]");
  g.set("SLURM_JOB_ID", "123456");
  DistEnv e = detect_dist_env();
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "gpu01");
  EXPECT_EQ(e.master_port, 20000 + 123456 % 10000);
  EXPECT_EQ(e.launcher, "slurm");

  g.set("SLURM_STEP_NODELIST", "n[3,5-7]");  // the step's list wins over the job's
  g.set("MASTER_PORT", "31000");
  e = detect_dist_env();
  EXPECT_EQ(e.master_addr, "n3");
  EXPECT_EQ(e.master_port, 31000);

  g.set("SLURM_STEP_NODELIST", "a,b");
  EXPECT_EQ(detect_dist_env().master_addr, "a");
  g.set("MASTER_ADDR", "10.0.0.9");  // an explicit MASTER_ADDR wins
  EXPECT_EQ(detect_dist_env().master_addr, "10.0.0.9");

  g.set("SLURM_NTASKS", "4");  // rank 5 of 4
  EXPECT_THROW(detect_dist_env(), streamsink::Error);
}

TEST(Distributed, WorldOfOneIsANoOp) {
  auto d = streamsink::Distributed::init(DistEnv{}, c10::Device(c10::kCPU), std::chrono::milliseconds(1000));
  EXPECT_EQ(d->world_size(), 1);
  EXPECT_TRUE(d->is_main());
  EXPECT_EQ(d->backend_name(), "none");
  std::vector<at::Tensor> t{at::arange(5, at::kFloat)};
  d->allreduce_mean(t);
  d->broadcast(t);
  d->barrier();
  EXPECT_TRUE(at::equal(t[0], at::arange(5, at::kFloat)));
  EXPECT_EQ(d->allreduce_sum(2.5), 2.5);
  EXPECT_EQ(d->allreduce_sum(std::vector<double>{2.5, 1.0}), (std::vector<double>{2.5, 1.0}));
}

TEST(Distributed, LaunchedWorldOfOneBuildsAGroupOfOne) {
  DistEnv env;
  env.launcher = "streamsink-launch";
  env.master_port = streamsink::free_local_port();
  auto d = streamsink::Distributed::init(env, c10::Device(c10::kCPU), std::chrono::milliseconds(20000));
  EXPECT_EQ(d->world_size(), 1);
  EXPECT_EQ(d->backend_name(), "gloo");
  std::vector<at::Tensor> t{at::arange(5, at::kFloat), at::full({3}, 0.25, at::kDouble)};
  d->allreduce_mean(t);
  d->broadcast(t);
  d->barrier();
  EXPECT_TRUE(at::equal(t[0], at::arange(5, at::kFloat)));
  EXPECT_TRUE(at::equal(t[1], at::full({3}, 0.25, at::kDouble)));
  EXPECT_EQ(d->allreduce_sum(2.5), 2.5);
  EXPECT_EQ(d->allreduce_sum(std::vector<double>{2.5, -1.0, 0.0}), (std::vector<double>{2.5, -1.0, 0.0}));
}

// ---- two real processes ----

struct Proc {
  pid_t pid = -1;
  std::string log;
};

struct Finished {
  int exit_code = -1;  // exit status, or 128+signal
  std::string output;
};

// Starts argv (argv[0] a path) with the test's environment minus the launcher variables, plus `extra`; stdout and
// stderr go to `log`.
Proc spawn(const std::string& log, std::vector<std::string> argv_s, const std::vector<std::string>& extra) {
  Proc p;
  p.log = log;
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    if (kv.rfind("RANK=", 0) == 0 || kv.rfind("WORLD_SIZE=", 0) == 0 || kv.rfind("MASTER_", 0) == 0 ||
        kv.rfind("LOCAL_RANK=", 0) == 0 || kv.rfind("TORCHELASTIC_", 0) == 0)
      continue;
    env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& kv : env) envp.push_back(kv.data());
  envp.push_back(nullptr);
  p.pid = fork();
  if (p.pid == 0) {
    FILE* f = freopen(p.log.c_str(), "w", stdout);
    (void)f;
    dup2(STDOUT_FILENO, STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return p;
}

// Starts tests/dist_worker as one rank of a world of `world` with torchrun's variables.
Proc start_worker(const TempDir& dir, int rank, int world, int port, const std::vector<std::string>& args) {
  std::vector<std::string> argv{STREAMSINK_DIST_WORKER};
  argv.insert(argv.end(), args.begin(), args.end());
  return spawn((dir.path() / ("rank" + std::to_string(rank) + ".log")).string(), argv,
               {"RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(world),
                "LOCAL_RANK=" + std::to_string(rank), "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
                "OMP_NUM_THREADS=1"});
}

// Waits for a worker, killing it after `limit`.
Finished finish(const Proc& p, std::chrono::seconds limit = std::chrono::seconds(60)) {
  Finished f;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pid_t w = waitpid(p.pid, &status, WNOHANG);
    if (w == p.pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, &status, 0);
      f.output = "[killed by the test after the limit]\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  f.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(p.log);
  std::stringstream ss;
  ss << in.rdbuf();
  f.output += ss.str();
  // Leave the folder empty: std::filesystem::remove_all (TempDir) on a non-empty folder crashes with this LibTorch
  // on Debian 12 (libtorch.so exports its own remove_all, which calls a GCC 13 libstdc++ symbol that is missing).
  unlink(p.log.c_str());
  return f;
}

TEST(DistributedGloo, TwoRanksCollectivesMatchClosedForms) {
  TempDir dir;
  const int port = streamsink::free_local_port();
  Proc p0 = start_worker(dir, 0, 2, port, {"collectives", "20"});
  Proc p1 = start_worker(dir, 1, 2, port, {"collectives", "20"});
  Finished f0 = finish(p0), f1 = finish(p1);
  EXPECT_EQ(f0.exit_code, 0) << f0.output;
  EXPECT_EQ(f1.exit_code, 0) << f1.output;
  EXPECT_NE(f0.output.find("OK rank 0 of 2"), std::string::npos) << f0.output;
  EXPECT_NE(f1.output.find("OK rank 1 of 2"), std::string::npos) << f1.output;
}

// Rank `victim` dies right after set-up (mode); the survivor's next collective must fail within the timeout,
// naming the lost rank.
void expect_survivor_names_lost_rank(const std::string& mode, int victim) {
  TempDir dir;
  const int port = streamsink::free_local_port();
  const int timeout_s = 5;
  const int survivor = 1 - victim;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> args{mode, std::to_string(timeout_s), std::to_string(victim)};
  Proc p0 = start_worker(dir, 0, 2, port, args);
  Proc p1 = start_worker(dir, 1, 2, port, args);
  Finished f[2] = {finish(victim == 0 ? p0 : p1), finish(victim == 0 ? p1 : p0)};
  const Finished& dead = f[0];
  const Finished& alive = f[1];
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(dead.exit_code, 0) << dead.output;
  EXPECT_EQ(alive.exit_code, 3) << alive.output;
  EXPECT_NE(alive.output.find("ERROR: distributed"), std::string::npos) << alive.output;
  // "... on rank R of 2" when the victim dies at the survivor's first collective, "rank R of 2 could not connect
  // its gloo process group" when it dies first, while the survivor is still connecting (seen under ASan's timing).
  EXPECT_NE(alive.output.find("rank " + std::to_string(survivor) + " of 2"), std::string::npos) << alive.output;
  EXPECT_NE(alive.output.find("lost rank " + std::to_string(victim)), std::string::npos) << alive.output;
  // The error comes within the timeout (plus the short liveness check), never a hang.
  const auto at = alive.output.find("ELAPSED_MS ");
  ASSERT_NE(at, std::string::npos) << alive.output;
  const long ms = std::stol(alive.output.substr(at + 11));
  EXPECT_LT(ms, (timeout_s + 2) * 1000) << alive.output;
  EXPECT_LT(wall, 3.0 * timeout_s) << alive.output;
}

TEST(DistributedGloo, PeerThatExitsMakesSurvivorThrowNamingIt) { expect_survivor_names_lost_rank("die-exit", 1); }

TEST(DistributedGloo, PeerThatIsKilledMakesSurvivorThrowNamingIt) { expect_survivor_names_lost_rank("die-kill", 1); }

TEST(DistributedGloo, StoreHostThatIsKilledIsNamedByTheSurvivor) { expect_survivor_names_lost_rank("die-kill", 0); }

TEST(DistributedGloo, PeerThatHangsMakesSurvivorTimeOutNamingIt) {
  TempDir dir;
  const int port = streamsink::free_local_port();
  const std::vector<std::string> args{"hang", "3", "1"};
  Proc p0 = start_worker(dir, 0, 2, port, args);
  Proc p1 = start_worker(dir, 1, 2, port, args);
  Finished f0 = finish(p0);
  kill(p1.pid, SIGKILL);
  finish(p1);
  EXPECT_EQ(f0.exit_code, 3) << f0.output;
  EXPECT_NE(f0.output.find("no answer within the timeout of 3.0 s"), std::string::npos) << f0.output;
  EXPECT_NE(f0.output.find("lost rank 1"), std::string::npos) << f0.output;
  const auto at = f0.output.find("ELAPSED_MS ");
  ASSERT_NE(at, std::string::npos) << f0.output;
  EXPECT_LT(std::stol(f0.output.substr(at + 11)), 3000 + 1000 + 1500) << f0.output;  // timeout + liveness check
}

TEST(DistributedGloo, PeerMissingAtSetUpFailsRendezvousWithinTimeout) {
  TempDir dir;
  const int port = streamsink::free_local_port();
  Proc p0 = start_worker(dir, 0, 2, port, {"die-before-init", "3"});
  Proc p1 = start_worker(dir, 1, 2, port, {"die-before-init", "3"});
  Finished f1 = finish(p1);
  Finished f0 = finish(p0);
  EXPECT_EQ(f1.exit_code, 7);
  EXPECT_EQ(f0.exit_code, 3) << f0.output;
  EXPECT_NE(f0.output.find("rendezvous"), std::string::npos) << f0.output;
  const auto at = f0.output.find("ELAPSED_MS ");
  ASSERT_NE(at, std::string::npos) << f0.output;
  EXPECT_LT(std::stol(f0.output.substr(at + 11)), 8000) << f0.output;
}

// ---- streamsink launch ----

TEST(Launch, RunsRanksWithPrefixedOutput) {
  RunResult r = run_streamsink(std::string("launch --nproc 2 --exec ") + STREAMSINK_DIST_WORKER + " -- collectives 20");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[rank 0] OK rank 0 of 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank 1] OK rank 1 of 2"), std::string::npos) << r.output;
}

TEST(Launch, FailedRankStopsTheJobAndIsNamed) {
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = run_streamsink(std::string("launch --nproc 2 --grace 2 --exec ") + STREAMSINK_DIST_WORKER +
                               " -- die-kill 20");
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("failed: rank 1 was killed by signal 9 (SIGKILL)"), std::string::npos) << r.output;
  EXPECT_LT(wall, 15.0) << r.output;  // well under the workers' own 20 s timeout
}

TEST(Launch, ExitCodeOfAFailedRankIsReported) {
  RunResult r = run_streamsink(std::string("launch --nproc 2 --grace 2 --exec ") + STREAMSINK_DIST_WORKER +
                               " -- die-exit 20");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with code 7"), std::string::npos) << r.output;
}

// How many processes have `parent` as their parent (from /proc/<pid>/stat).
int children_of(pid_t parent) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent) ++n;
  }
  return n;
}

TEST(Launch, ForwardsSigintToTheRanks) {
  TempDir dir;
  // Both ranks would block for 30 s (rank 1 sleeps, rank 0 waits for it); SIGINT to the launcher must end them now.
  Proc launcher = spawn((dir.path() / "launch.log").string(),
                        {streamsink::testing::streamsink_binary(), "launch", "--nproc", "2", "--exec", STREAMSINK_DIST_WORKER, "--", "hang",
                         "30", "1"},
                        {});
  // Wait until the launcher has started both ranks (so its handler is installed), however loaded the machine is.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (children_of(launcher.pid) < 2 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(children_of(launcher.pid), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  kill(launcher.pid, SIGINT);
  Finished f = finish(launcher, std::chrono::seconds(20));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(f.exit_code, 128 + SIGINT) << f.output;
  EXPECT_NE(f.output.find("got SIGINT, forwarding it to the ranks"), std::string::npos) << f.output;
  EXPECT_LT(wall, 5.0) << f.output;
}

// What a spawned process has written so far ("" before its log exists).
std::string log_so_far(const Proc& p) {
  std::ifstream in(p.log);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts `streamsink launch --nproc 2 --grace G` over /bin/sh running `script` (each rank sees its RANK) and waits
// until both ranks have printed "ready" (their traps are set), however loaded the machine is.
Proc launch_shell_ranks(const TempDir& dir, double grace, const std::string& script) {
  Proc launcher = spawn((dir.path() / "launch.log").string(),
                        {streamsink::testing::streamsink_binary(), "launch", "--nproc", "2", "--grace",
                         std::to_string(grace), "--exec", "/bin/sh", "--", "-c", script},
                        {});
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(log_so_far(launcher).find("[rank 0] ready") != std::string::npos &&
           log_so_far(launcher).find("[rank 1] ready") != std::string::npos) &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return launcher;
}

// During a forwarded stop, a rank that fails (here: exits 3 on SIGTERM) may leave the others waiting for it in a
// collective (here: rank 0 ignores SIGTERM, as a trainer blocked in an all-reduce would until its timeout). The
// launcher still names the failure, starts the grace timer, SIGKILLs what is left and exits 1: no hang.
TEST(Launch, ARankThatFailsDuringAForwardedStopStillEndsTheJob) {
  TempDir dir;
  Proc launcher = launch_shell_ranks(dir, 1.0,
                                     "if [ \"$RANK\" = 1 ]; then trap 'exit 3' TERM; else trap '' TERM; fi; "
                                     "echo ready; while :; do sleep 0.1; done");
  const auto t0 = std::chrono::steady_clock::now();
  kill(launcher.pid, SIGTERM);
  Finished f = finish(launcher, std::chrono::seconds(30));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(f.exit_code, 1) << f.output;
  EXPECT_NE(f.output.find("got SIGTERM, forwarding it to the ranks"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("rank 1 (pid"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("exited with code 3; stopping the other ranks"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("s after SIGTERM: sending SIGKILL"), std::string::npos) << f.output;
  EXPECT_LT(wall, 15.0) << f.output;
}

// One stop request delivered twice within a second (`timeout` and `scancel` signal the launcher and then its process
// group) is forwarded once: the ranks stop in their own time (a trainer writes its checkpoint), nothing is SIGKILLed.
// A user's second signal, a second or more later, kills the ranks that are still stopping.
TEST(Launch, ASignalRepeatedWithinASecondIsOneStopAndALaterOneKills) {
  for (const bool later : {false, true}) {
    SCOPED_TRACE(later ? "second signal 2 s later" : "the same signal twice, 0.2 s apart");
    TempDir dir;
    // Each rank takes 4 s to stop after SIGTERM (the trap runs once the current `sleep 0.1` ends).
    Proc launcher = launch_shell_ranks(dir, 30.0,
                                       "trap 'sleep 4; echo stopped; exit 0' TERM; echo ready; "
                                       "while :; do sleep 0.1; done");
    const auto t0 = std::chrono::steady_clock::now();
    kill(launcher.pid, SIGTERM);
    // 0.2 s apart, not back to back: two kills in a row usually merge into one pending signal, which would test
    // nothing; `timeout`'s two are apart whenever the launcher runs in between.
    std::this_thread::sleep_for(std::chrono::milliseconds(later ? 2000 : 200));
    kill(launcher.pid, SIGTERM);
    Finished f = finish(launcher, std::chrono::seconds(30));
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(f.output.find("got SIGTERM, forwarding it to the ranks"), std::string::npos) << f.output;
    if (later) {
      EXPECT_NE(f.output.find("got a second signal: sending SIGKILL to the ranks"), std::string::npos) << f.output;
      EXPECT_EQ(f.output.find("] stopped"), std::string::npos) << f.output;  // killed within their 4 s stop
    } else {
      EXPECT_EQ(f.output.find("SIGKILL"), std::string::npos) << f.output;
      EXPECT_NE(f.output.find("[rank 0] stopped"), std::string::npos) << f.output;
      EXPECT_NE(f.output.find("[rank 1] stopped"), std::string::npos) << f.output;
      EXPECT_EQ(f.exit_code, 128 + SIGTERM) << f.output;
      EXPECT_GT(wall, 4.0) << f.output;  // the ranks' own stop, not a kill
    }
  }
}

// A signal that reaches the launcher after a rank has failed, while the grace timer runs, does not cancel that
// timer: the rank that ignores SIGTERM is still SIGKILLed when the grace runs out, and the job ends as failed.
TEST(Launch, ASignalAfterARankFailedDoesNotCancelTheKill) {
  TempDir dir;
  Proc launcher = launch_shell_ranks(dir, 4.0,
                                     "trap '' TERM; echo ready; if [ \"$RANK\" = 1 ]; then sleep 0.3; exit 5; fi; "
                                     "while :; do sleep 0.1; done");
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (log_so_far(launcher).find("stopping the other ranks") == std::string::npos &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(launcher.pid, SIGTERM);  // within the 4 s grace
  Finished f = finish(launcher, std::chrono::seconds(30));
  EXPECT_EQ(f.exit_code, 1) << f.output;
  EXPECT_NE(f.output.find("rank 1 (pid"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("exited with code 5; stopping the other ranks"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("got SIGTERM, forwarding it to the ranks"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("s after SIGTERM: sending SIGKILL"), std::string::npos) << f.output;
  EXPECT_EQ(f.output.find("[killed by the test after the limit]"), std::string::npos) << f.output;
}

TEST(Launch, NeedsSomethingToRun) {
  RunResult r = run_streamsink("launch --nproc 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("nothing to run"), std::string::npos) << r.output;
}

TEST(Launch, RunsStreamsinkItselfByDefault) {
  RunResult r = run_streamsink("launch --nproc 2 -- version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[rank 1] streamsink"), std::string::npos) << r.output;
}

}  // namespace
