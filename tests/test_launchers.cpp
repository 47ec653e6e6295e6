// ctest-labels: integration slow
// The other ways to start the trainer, end to end: under `torchrun --no-python` (its agent hosts the store), as
// SLURM tasks (srun's variables, the store on rank 0 at the job's default port), and `train --resume PATH` from an
// explicit checkpoint folder. The oracle for the two launchers is the same run through `streamsink launch --nproc 2`
// (tests/test_trainer_distributed.cpp): the same ranks reduce the same gradients in the same order, so the weights
// and the logged losses agree; the oracle for the resume is the uninterrupted run, bit for bit.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/checkpoint_compare.h"
#include "tests/corpus_fixture.h"

extern char** environ;

using namespace streamsink;
using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

// This process's environment without any launcher's variables (torchrun's, SLURM's, ours), plus `extra`: what a
// child started by a launcher would inherit, so that the test's own environment cannot pick the launcher.
std::vector<std::string> clean_env(const std::vector<std::string>& extra = {}) {
  const char* dropped[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "GROUP_RANK=", "ROLE_RANK=",
                           "MASTER_ADDR=", "MASTER_PORT=", "STREAMSINK_LAUNCHER=", "TORCHELASTIC_", "SLURM_"};
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    bool drop = false;
    for (const char* d : dropped) drop = drop || kv.rfind(d, 0) == 0;
    if (!drop) env.push_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// A child process in a process group of its own, stdout and stderr into `log`.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log) {
  std::vector<std::string> a = argv, e = env;  // storage for the pointers, built before fork()
  std::vector<char*> av, ev;
  for (auto& s : a) av.push_back(s.data());
  for (auto& s : e) ev.push_back(s.data());
  av.push_back(nullptr);
  ev.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(av[0], av.data(), ev.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

// Waits for every child until `limit` has passed; then a child still running gets SIGTERM (torchrun forwards it to
// its workers), and SIGKILL to its group after a grace. Returns each child's exit status (128+signal when killed;
// -1 when it was killed for running past the limit).
std::vector<int> wait_all(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  std::vector<int> codes(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  for (size_t i = 0; i < pids.size(); ++i) done[i] = pids[i] <= 0;
  const auto start = std::chrono::steady_clock::now();
  bool termed = false;
  for (;;) {
    bool all = true;
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        done[i] = true;
        if (!termed) codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else {
        all = false;
      }
    }
    if (all) return codes;
    const auto waited = std::chrono::steady_clock::now() - start;
    if (!termed && waited > limit) {
      termed = true;
      for (size_t i = 0; i < pids.size(); ++i)
        if (!done[i]) ::kill(pids[i], SIGTERM);
    }
    if (termed && waited > limit + std::chrono::seconds(10)) {
      for (size_t i = 0; i < pids.size(); ++i)
        if (!done[i]) ::kill(-pids[i], SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Bound on a whole two-rank run (each rank's collectives and rendezvous are bounded by train.timeout_s=60 already).
constexpr std::chrono::seconds kRunLimit{240};

// The run every launcher must reproduce: 3 steps on 2 ranks, losses logged every step, the last step evaluated and
// checkpointed.
const char* kCommon = "--set train.steps=3 --set train.log_interval=1 --set train.eval_interval=0 "
                      "--set train.checkpoint_interval=0 --set train.batch_size=4 --set train.threads=1 "
                      "--set train.timeout_s=60";
const char* kLastStep = "step_0000003";

// `train ARGS` split into argv words (tiny_train_args builds a shell line of words without quoting: the paths of
// these tests have no spaces).
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::string w;
  for (char c : line + " ") {
    if (c == ' ') {
      if (!w.empty()) out.push_back(w);
      w.clear();
    } else {
      w += c;
    }
  }
  return out;
}

// The same run as `oracle`: the weights of the last checkpoint (1e-6; the same reduction, so in practice equal), the
// loss of every step and the final validation loss.
void expect_same_run(const std::string& oracle, const std::string& run) {
  EXPECT_LT(max_param_diff(oracle, run, kLastStep), 1e-6);
  const auto ro = training_records(oracle), rr = training_records(run);
  ASSERT_EQ(ro.size(), 3u);
  ASSERT_EQ(rr.size(), ro.size());
  for (const auto& [step, rec] : ro) {
    ASSERT_TRUE(rr.count(step)) << "step " << step;
    EXPECT_EQ(rr.at(step)["loss"].get<double>(), rec["loss"].get<double>()) << "step " << step;
    EXPECT_EQ(rr.at(step)["tokens_seen"].get<int64_t>(), rec["tokens_seen"].get<int64_t>()) << "step " << step;
  }
  const double v = last_val_loss(oracle);
  ASSERT_GT(v, 0);
  EXPECT_EQ(last_val_loss(run), v);
}

// torchrun next to the set-up's Python (CI's scripts/test.sh exports STREAMSINK_PYTHON), else on PATH; "" if none.
std::string find_torchrun() {
  const fs::path beside = fs::path(venv_python()).parent_path() / "torchrun";
  if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    size_t at = 0;
    while (at <= dirs.size()) {
      const size_t end = std::min(dirs.find(':', at), dirs.size());
      const fs::path p = fs::path(dirs.substr(at, end - at)) / "torchrun";
      if (end > at && ::access(p.c_str(), X_OK) == 0) return p.string();
      at = end + 1;
    }
  }
  return "";
}

// A port in [20000, 30000) that was free a moment ago: SLURM's default store port is 20000 + SLURM_JOB_ID % 10000.
int free_port_in_slurm_range() {
  for (int i = 0; i < 10000; ++i) {
    const int port = 20000 + (getpid() * 7 + i) % 10000;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return port;
  }
  return -1;
}

}  // namespace

// `torchrun --no-python --nproc_per_node 2 --standalone streamsink train ...`: torchrun's agent hosts the store
// (TORCHELASTIC_USE_AGENT_STORE=True, MASTER_ADDR=localhost, a port of its choosing), the ranks join it as
// clients, and the run is the launcher's.
TEST(Launchers, TorchrunTrainsAsTheBundledLauncher) {
  const std::string torchrun = find_torchrun();
  if (torchrun.empty())
    GTEST_SKIP() << "no torchrun beside " << venv_python() << " nor on PATH (run scripts/setup.sh, or set "
                 << "STREAMSINK_PYTHON to the Python of a torch install)";
  TempDir dir;
  const std::string oracle = dir.str() + "/launch", run = dir.str() + "/torchrun";
  auto ref = run_streamsink("launch --nproc 2 -- " + tiny_train_args(oracle, kCommon));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;

  std::vector<std::string> argv = {torchrun, "--no-python", "--nproc_per_node", "2", "--standalone",
                                   streamsink_binary()};
  for (auto& w : words(tiny_train_args(run, kCommon))) argv.push_back(w);
  const std::string log = dir.str() + "/torchrun.log";
  const auto codes = wait_all({spawn(argv, clean_env(), log)}, kRunLimit);
  const std::string out = read_file(log);
  ASSERT_EQ(codes[0], 0) << out;
  EXPECT_NE(out.find("2 rank(s) via torchrun (gloo)"), std::string::npos) << out;
  // Rank 0 joins the agent's store as a client: were it to host one too, its bind to the agent's port would fail,
  // and torch's TCPStore (seeing TORCHELASTIC_USE_AGENT_STORE) would log that and carry on as a client.
  EXPECT_EQ(out.find("failed to bind"), std::string::npos) << out;
  expect_same_run(oracle, run);
}

// Two SLURM tasks as srun starts them (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID,
// SLURM_TASKS_PER_NODE, SLURM_JOB_NODELIST=localhost, SLURM_JOB_ID; no MASTER_ADDR or MASTER_PORT): rank 0 hosts
// the store on the first host of the node list at 20000 + SLURM_JOB_ID % 10000, and the run is the launcher's.
TEST(Launchers, SlurmTasksTrainAsTheBundledLauncher) {
  TempDir dir;
  const std::string oracle = dir.str() + "/launch", run = dir.str() + "/slurm";
  auto ref = run_streamsink("launch --nproc 2 -- " + tiny_train_args(oracle, kCommon));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;

  const int port = free_port_in_slurm_range();
  ASSERT_GT(port, 0) << "no free port in [20000, 30000)";
  const std::string job_id = std::to_string(4242 * 10000 + (port - 20000));  // the modulo gives `port` back
  std::vector<std::string> argv = {streamsink_binary()};
  for (auto& w : words(tiny_train_args(run, kCommon))) argv.push_back(w);
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    const auto env = clean_env({"SLURM_PROCID=" + std::to_string(r), "SLURM_NTASKS=2",
                                "SLURM_LOCALID=" + std::to_string(r), "SLURM_NODEID=0", "SLURM_TASKS_PER_NODE=2",
                                "SLURM_JOB_NODELIST=localhost", "SLURM_JOB_ID=" + job_id});
    pids.push_back(spawn(argv, env, dir.str() + "/rank" + std::to_string(r) + ".log"));
  }
  const auto codes = wait_all(pids, kRunLimit);
  const std::string out0 = read_file(dir.str() + "/rank0.log"), out1 = read_file(dir.str() + "/rank1.log");
  ASSERT_EQ(codes[0], 0) << "rank 0 (port " << port << "):\n" << out0 << "\nrank 1:\n" << out1;
  ASSERT_EQ(codes[1], 0) << "rank 1 (port " << port << "):\n" << out1 << "\nrank 0:\n" << out0;
  EXPECT_NE(out0.find("2 rank(s) via slurm (gloo)"), std::string::npos) << out0;
  expect_same_run(oracle, run);
}

// `train --resume A/checkpoints/step_0000002 --out B`: a fresh run folder continues another run from one of its
// checkpoints (not its latest) and ends where that run ended, bit for bit; B's metrics start at step 3, and A is
// left as it was. The same path with `--out A` rewinds A to step 2 and trains it to the same end again.
TEST(Launchers, ResumeFromAnExplicitCheckpointContinuesItExactly) {
  TempDir dir;
  const std::string a = dir.str() + "/a", b = dir.str() + "/b";
  const std::string common = "--set train.steps=4 --set train.checkpoint_interval=2 --set train.log_interval=1 "
                             "--set train.eval_interval=0 --set train.threads=1";
  auto ra = run_streamsink(tiny_train_args(a, common));
  ASSERT_EQ(ra.exit_code, 0) << ra.output;
  const std::string step2 = a + "/checkpoints/step_0000002";
  ASSERT_TRUE(fs::exists(step2 + "/model.safetensors")) << ra.output;
  const std::string a2 = read_file(step2 + "/model.safetensors"),
                    a4 = read_file(a + "/checkpoints/step_0000004/model.safetensors");
  const std::string a_metrics = read_file(a + "/metrics.jsonl");

  auto rb = run_streamsink(tiny_train_args(b, common + " --resume " + step2));
  ASSERT_EQ(rb.exit_code, 0) << rb.output;
  EXPECT_NE(rb.output.find("resuming " + step2 + " at step 2"), std::string::npos) << rb.output;
  EXPECT_TRUE(read_file(b + "/checkpoints/step_0000004/model.safetensors") == a4) << "B's weights differ from A's";
  EXPECT_EQ(max_param_diff(a, b, "step_0000004"), 0.0);
  EXPECT_EQ(resolve_checkpoint_dir(b), b + "/checkpoints/step_0000004");  // B's latest, for a later --resume auto
  const auto recs_a = training_records(a), recs_b = training_records(b);
  std::vector<int64_t> steps_b;
  for (const auto& [s, rec] : recs_b) steps_b.push_back(s);
  EXPECT_EQ(steps_b, (std::vector<int64_t>{3, 4}));
  for (int64_t s : steps_b) {
    ASSERT_TRUE(recs_a.count(s)) << "step " << s;
    for (const char* key : {"loss", "grad_norm", "lr"})
      EXPECT_EQ(recs_b.at(s)[key].get<double>(), recs_a.at(s)[key].get<double>()) << key << " at step " << s;
    EXPECT_EQ(recs_b.at(s)["tokens_seen"].get<int64_t>(), recs_a.at(s)["tokens_seen"].get<int64_t>()) << s;
  }
  EXPECT_EQ(last_val_loss(b), last_val_loss(a));
  // the run resumed from is read, never written
  EXPECT_TRUE(read_file(step2 + "/model.safetensors") == a2) << step2 << " was rewritten";
  EXPECT_TRUE(read_file(a + "/checkpoints/step_0000004/model.safetensors") == a4) << "A's step 4 was rewritten";
  EXPECT_EQ(read_file(a + "/metrics.jsonl"), a_metrics);

  // Rewinding A itself: its metrics past step 2 are dropped and logged again, the same; step 4 is rewritten, the same.
  auto rewind = run_streamsink(tiny_train_args(a, common + " --resume " + step2));
  ASSERT_EQ(rewind.exit_code, 0) << rewind.output;
  EXPECT_NE(rewind.output.find("resuming " + step2 + " at step 2"), std::string::npos) << rewind.output;
  EXPECT_TRUE(read_file(a + "/checkpoints/step_0000004/model.safetensors") == a4) << "the rewound step 4 differs";
  const std::string rewound = read_file(a + "/metrics.jsonl");
  EXPECT_EQ(std::count(rewound.begin(), rewound.end(), '\n'), std::count(a_metrics.begin(), a_metrics.end(), '\n'))
      << "steps 3 and 4 logged twice?\n" << rewound;
  const auto recs_rewound = training_records(a);
  ASSERT_EQ(recs_rewound.size(), 4u);
  for (const auto& [s, rec] : recs_a)
    EXPECT_EQ(recs_rewound.at(s)["loss"].get<double>(), rec["loss"].get<double>()) << "step " << s;
  // ...the abandoned run's step 4 is kept aside, never resumed or pruned.
  EXPECT_TRUE(read_file(a + "/checkpoints/abandoned_after_step_0000002/step_0000004/model.safetensors") == a4);

  // A rewind that crashes before its first checkpoint: `--resume auto` continues the rewind from step 2, not the
  // abandoned run's step 4 (review, session 16: `latest` kept naming step 4 until the rewound run's first checkpoint).
  auto crashed = run_shell("STREAMSINK_FAULT_EXIT_AT_STEP=4 " + streamsink_binary() + " " +
                           tiny_train_args(a, common + " --resume " + step2));
  ASSERT_EQ(crashed.exit_code, 9) << crashed.output;
  auto resumed = run_streamsink(tiny_train_args(a, common + " --resume auto"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming " + step2 + " at step 2"), std::string::npos) << resumed.output;
  EXPECT_TRUE(read_file(a + "/checkpoints/step_0000004/model.safetensors") == a4) << "the resumed step 4 differs";
  EXPECT_EQ(training_records(a).size(), 4u);
}

// `--resume PATH` into a folder that already holds a run of its own, PATH being another folder's checkpoint, would
// overwrite that run's checkpoints past the step and splice its metrics.jsonl onto the other run's: refused, as a
// fresh run into it is, and the folder is left as it was.
TEST(Launchers, ResumingAnotherFoldersCheckpointIntoAFolderHoldingARunIsRefused) {
  TempDir dir;
  const std::string a = dir.str() + "/a", c = dir.str() + "/c";
  const std::string common = "--set train.steps=2 --set train.checkpoint_interval=1 --set train.eval_interval=0 "
                             "--set train.threads=1";
  auto ra = run_streamsink(tiny_train_args(a, common));
  ASSERT_EQ(ra.exit_code, 0) << ra.output;
  auto rc = run_streamsink(tiny_train_args(c, common + " --set train.lr=1e-3"));  // another run
  ASSERT_EQ(rc.exit_code, 0) << rc.output;
  const std::string c2 = read_file(c + "/checkpoints/step_0000002/model.safetensors"),
                    c_metrics = read_file(c + "/metrics.jsonl"), c_config = read_file(c + "/config.yaml");

  // refused with C's `latest` in place, without it (a run whose pointer was lost), and for a folder whose run was
  // stopped before its first checkpoint (metrics.jsonl only)
  const std::string resume = " --resume " + a + "/checkpoints/step_0000001";
  for (const char* stage : {"whole", "no latest", "metrics only"}) {
    if (std::string(stage) == "no latest") std::filesystem::remove(c + "/checkpoints/latest");
    if (std::string(stage) == "metrics only") std::filesystem::remove_all(c + "/checkpoints");
    auto r = run_streamsink(tiny_train_args(c, common + resume));
    EXPECT_NE(r.exit_code, 0) << stage << "\n" << r.output;
    EXPECT_NE(r.output.find(c + ": already holds a run of its own"), std::string::npos) << stage << "\n" << r.output;
    if (std::string(stage) != "metrics only")
      EXPECT_TRUE(read_file(c + "/checkpoints/step_0000002/model.safetensors") == c2) << stage << ": step 2 overwritten";
    EXPECT_EQ(read_file(c + "/metrics.jsonl"), c_metrics) << stage;
    EXPECT_EQ(read_file(c + "/config.yaml"), c_config) << stage;
  }
}
