// ctest-labels: faults slow integration
// Fault injection through the real executable (test-only hooks: common/fault_injection.h):
//   - SIGKILL at random moments (many inside a checkpoint write) and --resume auto, again and again: `latest`
//     always names a loadable checkpoint and the final weights equal an uninterrupted run's bit for bit;
//   - SIGTERM / SIGINT: a checkpoint at the stop step, exit 128 + the signal (a launcher's ranks: 0);
//   - a rank dying in a two-rank job: the survivor names the lost rank within the timeout, the launcher fails;
//   - NaN or inf in the gradients or the loss: nan_policy=skip skips and counts it; stop stops with the last checkpoint
//     intact;
//   - weights made non-finite by an update (injected, or a real learning-rate blow-up): the run stops under either
//     policy, writes no checkpoint of them, and names the step and the last checkpoint whose weights are finite;
//   - a failed write in the middle of a checkpoint: the previous checkpoint and `latest` stay, the run says so.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <thread>

#include "common/file_util.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/corpus_fixture.h"
#include "tests/fault_helpers.h"

using namespace streamsink;
using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> events(const std::string& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("event")) out.push_back(j);
  }
  return out;
}

std::string latest_name(const std::string& run) {
  std::string s = slurp(run + "/checkpoints/latest");
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Everything a resume reads from the checkpoint `latest` names: config + weights into a model, the optimizer
// file, state.json. Returns the step it holds; a failure is a test failure (with `what` for context).
int64_t check_latest_loads(const std::string& run, const std::string& what) {
  std::string dir;
  try {
    dir = resolve_checkpoint_dir(run);
    load_model(dir);
    load_safetensors(dir + "/optimizer.safetensors");
    auto j = nlohmann::json::parse(read_file(dir + "/state.json"));
    const int64_t step = j.at("step").get<int64_t>();
    char name[32];
    std::snprintf(name, sizeof name, "step_%07lld", static_cast<long long>(step));
    EXPECT_EQ(fs::path(dir).filename().string(), name) << what;
    return step;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": `latest` names a broken checkpoint (" << dir << "): " << e.what();
    return -1;
  }
}

bool all_finite(const std::string& safetensors) {
  for (const auto& [name, t] : load_safetensors(safetensors))
    if (!t.isfinite().all().item<bool>()) return false;
  return true;
}

// The checkpoint folders of RUN (step_*, complete or not), sorted.
std::vector<std::string> checkpoint_dirs(const std::string& run) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(run) / "checkpoints", ec))
    if (e.path().filename().string().rfind("step_", 0) == 0) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// That a run stopped for weights made non-finite by the update of `step`: exit 1 (an Error, under either nan_policy),
// a message naming the step and the last checkpoint with finite weights (`want_last`, "" for none: and that checkpoint
// really is finite), no checkpoint past it, every checkpoint left finite, and the event in metrics.jsonl.
void expect_stopped_for_non_finite_weights(const std::string& run, int rc, const std::string& out, int64_t step,
                                           const std::string& want_last, const std::string& policy) {
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("error: step " + std::to_string(step) + ": the optimizer update"), std::string::npos) << out;
  EXPECT_NE(out.find("made the weights non-finite (inf or NaN in '"), std::string::npos) << out;
  EXPECT_NE(out.find("whatever train.nan_policy (a skip cannot undo an update)"), std::string::npos) << out;
  EXPECT_EQ(out.find("done:"), std::string::npos) << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("Last checkpoint with finite weights: (\\S+)"))) << out;
  if (want_last.empty()) {
    EXPECT_EQ(m[1].str(), "none") << out;
    EXPECT_EQ(checkpoint_dirs(run), std::vector<std::string>{}) << "a checkpoint of non-finite weights was written";
  } else {
    EXPECT_EQ(m[1].str(), run + "/checkpoints/" + want_last) << out;
    EXPECT_TRUE(all_finite(m[1].str() + "/model.safetensors")) << "the checkpoint it names is not finite";
    EXPECT_EQ(latest_name(run), want_last);
    EXPECT_EQ(checkpoint_dirs(run).back(), want_last) << "a checkpoint past the last finite one was written";
  }
  for (const auto& name : checkpoint_dirs(run))
    EXPECT_TRUE(all_finite(run + "/checkpoints/" + name + "/model.safetensors")) << name << " holds inf or NaN";
  const auto ev = events(run);
  ASSERT_FALSE(ev.empty()) << slurp(run + "/metrics.jsonl");
  EXPECT_EQ(ev.back()["event"], "non_finite_weights");
  EXPECT_EQ(ev.back()["step"], step);
  EXPECT_EQ(ev.back()["policy"], policy);
}

// Evidence that a kill interrupted a checkpoint: a temporary folder or file left behind (by process `pid`, or by
// any process when pid is 0).
bool partial_write_left(const std::string& run, pid_t pid = 0) {
  const fs::path root = fs::path(run) / "checkpoints";
  if (!fs::exists(root)) return false;
  const std::string dir_tag = ".tmp-" + (pid ? std::to_string(pid) : ""), file_tag = ".tmp." + (pid ? std::to_string(pid) : "");
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    const auto n = e.path().filename().string();
    if (n.find(dir_tag) != std::string::npos || n.find(file_tag) != std::string::npos) return true;
  }
  return false;
}

bool wait_for(const std::function<bool()>& cond, pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid)
      return cond();  // it ended: look once more (not reaped here)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace

// The chaos test: >= 20 SIGKILLs, half of them aimed inside a checkpoint write (checkpoints every step, each file
// separated by STREAMSINK_FAULT_SLOW_CHECKPOINT_MS), half at a random moment; --resume auto after each.
TEST(Faults, SigkillAtRandomMomentsThenResumeEqualsTheUninterruptedRunBitForBit) {
  TempDir dir;
  const int64_t steps = 200;  // room for 24 kills however fast the machine trains
  const std::string common = "--set train.steps=" + std::to_string(steps) +
                             " --set train.log_interval=1 --set train.eval_interval=0 --set train.threads=1"
                             " --set train.checkpoint_interval=1 --set train.keep_checkpoints=2";
  auto ref = run_streamsink(tiny_train_args(dir.str() + "/ref", common));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;

  const std::string run = dir.str() + "/run";
  std::mt19937 rng(20240917);
  const int kWantKills = 24;
  int kills = 0, mid_write = 0, segments = 0;
  int64_t last_step = 0;
  const std::vector<std::pair<std::string, std::string>> env = {{"STREAMSINK_FAULT_SLOW_CHECKPOINT_MS", "8"}};
  while (kills < kWantKills && segments < 200) {
    ++segments;
    const std::string log = run + "-" + std::to_string(segments) + ".log";
    const pid_t pid = spawn_streamsink(tiny_train_args(run, common + " --resume auto"), env, log);
    const bool aim_at_checkpoint = kills % 2 == 1;
    if (aim_at_checkpoint) {
      // Wait for a checkpoint being written by this process, then kill it a few ms later (the hook's pauses make
      // the write span tens of ms).
      const std::string tmp_suffix = ".tmp-" + std::to_string(pid);
      wait_for(
          [&] {
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(run + "/checkpoints", ec))
              if (e.path().filename().string().find(tmp_suffix) != std::string::npos) return true;
            return false;
          },
          pid, 30);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 40)(rng)));
    } else {
      // A random moment once training runs (start-up takes seconds and is not what this test is about).
      wait_for([&] { return slurp(log).find("\nstep ") != std::string::npos; }, pid, 60);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
    }
    kill(pid, SIGKILL);
    const int rc = wait_exit(pid, 30);
    ASSERT_NE(rc, -2) << "the trainer did not die";
    if (rc != 128 + SIGKILL) {
      ASSERT_EQ(rc, 0) << "segment " << segments << " failed before the kill:\n" << slurp(log);
      break;  // finished before the kill landed
    }
    ++kills;
    mid_write += partial_write_left(run, pid);
    if (fs::exists(run + "/checkpoints/latest")) {
      const int64_t step = check_latest_loads(run, "after kill " + std::to_string(kills));
      EXPECT_GE(step, last_step) << "`latest` went backwards";
      last_step = std::max(last_step, step);
    }
  }
  std::fprintf(stderr, "[faults] %d SIGKILLs in %d segments, %d of them left a half-written checkpoint; "
               "latest reached step %lld before the final run\n", kills, segments, mid_write,
               static_cast<long long>(last_step));
  EXPECT_GE(kills, 20);
  EXPECT_GE(mid_write, 5) << "too few kills landed inside a checkpoint write";

  auto fin = run_streamsink(tiny_train_args(run, common + " --resume auto"));
  ASSERT_EQ(fin.exit_code, 0) << fin.output;
  char name[32];
  std::snprintf(name, sizeof name, "step_%07lld", static_cast<long long>(steps));
  EXPECT_EQ(latest_name(run), name);
  const auto a = read_file(dir.str() + "/ref/checkpoints/" + name + "/model.safetensors");
  const auto b = read_file(run + "/checkpoints/" + name + "/model.safetensors");
  EXPECT_TRUE(a == b) << "the final weights differ from the uninterrupted run's";
  EXPECT_EQ(read_file(dir.str() + "/ref/checkpoints/" + name + "/optimizer.safetensors"),
            read_file(run + "/checkpoints/" + name + "/optimizer.safetensors"));
  // metrics.jsonl reads as one run with the uninterrupted run's numbers.
  auto ra = training_records(dir.str() + "/ref"), rb = training_records(run);
  ASSERT_EQ(rb.size(), static_cast<size_t>(steps));
  for (int64_t s = 1; s <= steps; ++s) {
    EXPECT_EQ(ra[s]["loss"].get<double>(), rb[s]["loss"].get<double>()) << "step " << s;
    EXPECT_EQ(ra[s]["grad_norm"].get<double>(), rb[s]["grad_norm"].get<double>()) << "step " << s;
  }
}

TEST(Faults, SigtermAndSigintStopAfterWritingACheckpoint) {
  for (const int sig : {SIGTERM, SIGINT}) {
    TempDir dir;
    const std::string run = dir.str() + "/run", log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink(
        tiny_train_args(run, "--set train.steps=100000 --set train.log_interval=1 --set train.eval_interval=0 "
                             "--set train.checkpoint_interval=0 --set train.threads=1"),
        {}, log);
    ASSERT_TRUE(wait_for([&] { return slurp(log).find("step 3/") != std::string::npos; }, pid, 60)) << slurp(log);
    kill(pid, sig);
    const int rc = wait_exit(pid, 60);
    const std::string out = slurp(log);
    ASSERT_EQ(rc, 128 + sig) << strsignal(sig) << "\n" << out;  // as a shell expects of a signalled process
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("stopped at step ([0-9]+) \\((SIGTERM|SIGINT)\\)"))) << out;
    EXPECT_EQ(m[2].str(), sig == SIGTERM ? "SIGTERM" : "SIGINT");
    const int64_t stop_step = std::stoll(m[1].str());
    EXPECT_GE(stop_step, 3);
    EXPECT_EQ(check_latest_loads(run, strsignal(sig)), stop_step) << "the checkpoint must be the stop step's";
    EXPECT_FALSE(partial_write_left(run));
  }
}

// A stop request (a signal, the clock of train.max_seconds) that reaches one rank of two: every rank stops at the
// same step, rank 0 writes that step's checkpoint, and the launcher exits 0 (a rank stopping alone would leave the
// other waiting in a collective until the timeout). The stopped job then resumes to the uninterrupted job's weights.
TEST(Faults, AStopThatReachesOneRankStopsEveryRankAtTheSameStep) {
  for (const int asked : {1, 0}) {
    TempDir dir;
    const std::string common = "--set train.steps=6 --set train.eval_interval=0 --set train.log_interval=1 "
                               "--set train.checkpoint_interval=0 --set train.threads=1 --set train.timeout_s=10 "
                               "--set train.batch_size=4";
    const std::string log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink("launch --nproc 2 -- " + tiny_train_args(dir.str() + "/run", common),
                                       {{"STREAMSINK_FAULT_STOP_AT_STEP", "3"},
                                        {"STREAMSINK_FAULT_RANK", std::to_string(asked)}},
                                       log);
    const int rc = wait_exit(pid, 90);
    const std::string out = slurp(log);
    ASSERT_EQ(rc, 0) << "rank " << asked << " asked to stop\n" << out;
    EXPECT_NE(out.find(asked == 0 ? "stopped at step 3 (STREAMSINK_FAULT_STOP_AT_STEP)"
                                  : "stopped at step 3 (a stop request on another rank)"),
              std::string::npos)
        << out;
    EXPECT_EQ(check_latest_loads(dir.str() + "/run", "stopped"), 3);
    EXPECT_EQ(training_records(dir.str() + "/run").rbegin()->first, 3) << "metrics.jsonl ends at the stop step";

    auto resumed = run_streamsink("launch --nproc 2 -- " +
                                  tiny_train_args(dir.str() + "/run", common + " --resume auto"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    auto whole = run_streamsink("launch --nproc 2 -- " + tiny_train_args(dir.str() + "/whole", common));
    ASSERT_EQ(whole.exit_code, 0) << whole.output;
    EXPECT_TRUE(read_file(dir.str() + "/run/checkpoints/step_0000006/model.safetensors") ==
                read_file(dir.str() + "/whole/checkpoints/step_0000006/model.safetensors"))
        << "the resumed two-rank job's weights differ from the uninterrupted job's";
  }
}

// SIGTERM to `streamsink launch` reaches both ranks, each at its own moment: they agree on one stop step, rank 0
// writes its checkpoint, no rank fails or is killed, and the launcher exits 128 + SIGTERM as a signalled job does.
// The checkpoint is slowed to take ~6 s, longer than the failure grace (--grace 1): a forwarded signal waits for the
// ranks (before session 6 they were killed mid-write after the grace). A second signal, a second or more after the
// first, kills them at once.
// (The signal reaches both ranks within microseconds, so they rarely straddle a step: without the agreement this test
// passed 6 times of 6. AStopThatReachesOneRankStopsEveryRankAtTheSameStep is the deterministic check of it.)
TEST(Faults, SigtermToTheLauncherStopsBothRanksAtOneCheckpoint) {
  for (const int signals : {1, 2}) {
    TempDir dir;
    const std::string run = dir.str() + "/run", log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink(
        "launch --nproc 2 --grace 1 -- " +
            tiny_train_args(run, "--set train.steps=100000 --set train.log_interval=1 --set train.eval_interval=0 "
                                 "--set train.checkpoint_interval=0 --set train.threads=1 --set train.timeout_s=30 "
                                 "--set train.batch_size=4"),
        {{"STREAMSINK_FAULT_SLOW_CHECKPOINT_MS", "1000"}}, log);
    ASSERT_TRUE(wait_for([&] { return slurp(log).find("step 3/") != std::string::npos; }, pid, 90)) << slurp(log);
    const auto t0 = std::chrono::steady_clock::now();
    kill(pid, SIGTERM);
    if (signals == 2) {
      ASSERT_TRUE(wait_for([&] { return slurp(log).find("forwarding it to the ranks") != std::string::npos; }, pid, 30));
      // A user's second signal: one within a second of the first is the same request delivered twice (as `timeout`
      // delivers it) and does not count.
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
      kill(pid, SIGTERM);
    }
    const int rc = wait_exit(pid, 90);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string out = slurp(log);
    ASSERT_EQ(rc, 128 + SIGTERM) << out;
    if (signals == 2) {  // killed inside the slow checkpoint: `latest` (if any) still names a complete one
      EXPECT_NE(out.find("got a second signal: sending SIGKILL to the ranks"), std::string::npos) << out;
      EXPECT_LT(sec, 5.0) << out;
      if (fs::exists(run + "/checkpoints/latest")) check_latest_loads(run, "killed by a second signal");
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("\\[rank 0\\] \\[train\\] stopped at step ([0-9]+) \\(SIGTERM\\)")))
        << out;
    EXPECT_EQ(check_latest_loads(run, "launcher SIGTERM"), std::stoll(m[1].str())) << out;
    EXPECT_EQ(out.find("error"), std::string::npos) << out;
    EXPECT_EQ(out.find("SIGKILL"), std::string::npos) << out;
    EXPECT_GT(sec, 5.0) << "the checkpoint was meant to be slow\n" << out;
    EXPECT_FALSE(partial_write_left(run));
  }
}

// A rank that dies (STREAMSINK_FAULT_EXIT_AT_STEP: _exit(9), no goodbye) in a two-rank job: the survivor fails with
// a message naming the lost rank, within the collective timeout; the launcher fails too; nothing hangs.
TEST(Faults, ADyingRankIsNamedByTheSurvivorAndTheLauncherFails) {
  for (const int dead : {1, 0}) {
    TempDir dir;
    const std::string log = dir.str() + "/log";
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = spawn_streamsink(
        "launch --nproc 2 -- " +
            tiny_train_args(dir.str() + "/run", "--set train.steps=50 --set train.eval_interval=0 "
                                                "--set train.threads=1 --set train.timeout_s=10 --set train.log_interval=1"),
        {{"STREAMSINK_FAULT_EXIT_AT_STEP", "3"}, {"STREAMSINK_FAULT_RANK", std::to_string(dead)}}, log);
    const int rc = wait_exit(pid, 90);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string out = slurp(log);
    ASSERT_NE(rc, -2) << "hang: the launcher did not exit within 90 s\n" << out;
    EXPECT_NE(rc, 0) << out;
    EXPECT_LT(rc, 128) << out;
    EXPECT_NE(out.find("rank " + std::to_string(dead) + " exits abruptly"), std::string::npos) << out;
    const int survivor = 1 - dead;
    // The survivor's own error line, naming the lost rank.
    const std::regex named("\\[rank " + std::to_string(survivor) + "\\][^\n]*error[^\n]*lost rank " +
                           std::to_string(dead));
    EXPECT_TRUE(std::regex_search(out, named)) << "the survivor must name lost rank " << dead << "\n" << out;
    EXPECT_NE(out.find("rank " + std::to_string(dead) + " (pid"), std::string::npos) << out;  // the launcher says who
    EXPECT_LT(sec, 60) << out;
    std::fprintf(stderr, "[faults] rank %d died at step 3: launcher exit %d after %.1f s\n", dead, rc, sec);
  }
}

TEST(Faults, NanOrInfInTheGradientsIsSkippedAndCountedWithNanPolicySkip) {
  for (const char* value : {"nan", "inf"}) {
    SCOPED_TRACE(value);
    TempDir dir;
    const std::string run = dir.str() + "/run", log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink(
        tiny_train_args(run, "--set train.steps=6 --set train.eval_interval=0 --set train.log_interval=1 "
                             "--set train.nan_policy=skip --set train.threads=1"),
        {{"STREAMSINK_FAULT_NAN_STEP", "3"}, {"STREAMSINK_FAULT_NAN_VALUE", value}}, log);
    ASSERT_EQ(wait_exit(pid, 120), 0) << slurp(log);
    const auto out = slurp(log);
    EXPECT_NE(out.find("non-finite loss/gradient at step 3: step skipped (1 so far)"), std::string::npos) << out;
    const auto ev = events(run);
    ASSERT_EQ(ev.size(), 1u) << slurp(run + "/metrics.jsonl");
    EXPECT_EQ(ev[0]["event"], "non_finite");
    EXPECT_EQ(ev[0]["step"], 3);
    EXPECT_EQ(ev[0]["policy"], "skip");
    auto recs = training_records(run);
    EXPECT_EQ(recs.count(3), 0u);
    EXPECT_EQ(recs.count(6), 1u) << "training continued to the end";
    EXPECT_EQ(check_latest_loads(run, "skip"), 6);
    auto st = nlohmann::json::parse(read_file(run + "/checkpoints/step_0000006/state.json"));
    EXPECT_EQ(st["skipped_steps"], 1);
    EXPECT_TRUE(all_finite(run + "/checkpoints/step_0000006/model.safetensors"))
        << "a NaN or an inf reached the weights";
    EXPECT_TRUE(all_finite(run + "/checkpoints/step_0000006/optimizer.safetensors"))
        << "a NaN or an inf reached AdamW's moments";
  }
}

// A skipped step that is the last one (or a checkpoint step) still ends with its evaluation and checkpoint: before,
// the skip jumped past them, and a run "done" at step 4 left `latest` at step 2.
TEST(Faults, ASkippedLastStepStillEvaluatesAndCheckpoints) {
  TempDir dir;
  const std::string run = dir.str() + "/run", log = dir.str() + "/log";
  const pid_t pid = spawn_streamsink(
      tiny_train_args(run, "--set train.steps=4 --set train.checkpoint_interval=2 --set train.eval_interval=0 "
                           "--set train.nan_policy=skip --set train.threads=1"),
      {{"STREAMSINK_FAULT_NAN_STEP", "2,4"}}, log);
  ASSERT_EQ(wait_exit(pid, 120), 0) << slurp(log);
  const auto out = slurp(log);
  EXPECT_NE(out.find("step skipped (2 so far)"), std::string::npos) << out;
  EXPECT_NE(out.find("done: 4 steps"), std::string::npos) << out;
  EXPECT_EQ(check_latest_loads(run, "skipped last step"), 4);
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_0000002")) << "the skipped checkpoint step 2 wrote no checkpoint";
  auto st = nlohmann::json::parse(read_file(run + "/checkpoints/step_0000004/state.json"));
  EXPECT_EQ(st["skipped_steps"], 2);
  bool eval_at_4 = false;
  std::ifstream metrics(run + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    eval_at_4 |= j.contains("val_loss") && j["step"] == 4;
  }
  EXPECT_TRUE(eval_at_4) << slurp(run + "/metrics.jsonl");
}

TEST(Faults, TooManySkippedStepsStopTheRun) {
  TempDir dir;
  const std::string run = dir.str() + "/run", log = dir.str() + "/log";
  const pid_t pid = spawn_streamsink(
      tiny_train_args(run, "--set train.steps=8 --set train.eval_interval=0 --set train.nan_policy=skip "
                           "--set train.max_skipped_steps=2 --set train.threads=1"),
      {{"STREAMSINK_FAULT_NAN_STEP", "2,3,4"}, {"STREAMSINK_FAULT_NAN_IN", "loss"}}, log);
  const int rc = wait_exit(pid, 120);
  const auto out = slurp(log);
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(rc, 128) << out;
  EXPECT_NE(out.find("more than 2 skipped steps: stopping"), std::string::npos) << out;
  EXPECT_EQ(events(run).size(), 3u);
}

TEST(Faults, NanOrInfInTheLossStopsWithTheLastGoodCheckpointIntactWithNanPolicyStop) {
  for (const char* value : {"nan", "inf"}) {
    SCOPED_TRACE(value);
    TempDir dir;
    const std::string run = dir.str() + "/run", log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink(
        tiny_train_args(run, "--set train.steps=8 --set train.eval_interval=0 --set train.log_interval=1 "
                             "--set train.nan_policy=stop --set train.checkpoint_interval=2 --set train.threads=1"),
        {{"STREAMSINK_FAULT_NAN_STEP", "5"}, {"STREAMSINK_FAULT_NAN_IN", "loss"}, {"STREAMSINK_FAULT_NAN_VALUE", value}},
        log);
    const int rc = wait_exit(pid, 120);
    const auto out = slurp(log);
    EXPECT_NE(rc, 0) << out;
    EXPECT_LT(rc, 128) << out;
    EXPECT_NE(out.find("non-finite loss at step 5: stopping (nan_policy=stop)"), std::string::npos) << out;
    EXPECT_NE(out.find("last good checkpoint: " + run + "/checkpoints/step_0000004"), std::string::npos) << out;
    EXPECT_EQ(latest_name(run), "step_0000004");
    EXPECT_EQ(check_latest_loads(run, "stop"), 4);
    EXPECT_TRUE(all_finite(run + "/checkpoints/step_0000004/model.safetensors"));
    EXPECT_FALSE(fs::exists(run + "/checkpoints/step_0000005"));
    const auto ev = events(run);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0]["step"], 5);
    EXPECT_EQ(ev[0]["policy"], "stop");
  }
  // And a gradient NaN is caught the same way.
  TempDir dir2;
  const pid_t pid2 = spawn_streamsink(
      tiny_train_args(dir2.str() + "/run", "--set train.steps=4 --set train.eval_interval=0 --set train.nan_policy=stop "
                                           "--set train.threads=1"),
      {{"STREAMSINK_FAULT_NAN_STEP", "2"}}, dir2.str() + "/log");
  EXPECT_EQ(wait_exit(pid2, 120), 3) << slurp(dir2.str() + "/log");
  EXPECT_NE(slurp(dir2.str() + "/log").find("non-finite gradient at step 2"), std::string::npos);
}

// Weights that an update made non-finite (STREAMSINK_FAULT_NAN_IN=weights: the update of step N ends with a NaN or an
// inf in the weights), under either nan_policy: a skip cannot undo an update, so the run stops with an Error naming
// step N and the last checkpoint whose weights are finite, and writes no checkpoint of the non-finite weights. Step 3
// is caught at step 4's host sync (its loss and gradient norm); step 4, a checkpoint step, before its checkpoint.
TEST(Faults, WeightsMadeNonFiniteByAnUpdateStopTheRunUnderEitherPolicy) {
  struct Case {
    const char* policy;
    const char* value;
    int64_t step;
  };
  for (const Case c :
       {Case{"stop", "nan", 3}, Case{"skip", "inf", 3}, Case{"stop", "inf", 4}, Case{"skip", "nan", 4}}) {
    SCOPED_TRACE(std::string(c.policy) + " " + c.value + " at step " + std::to_string(c.step));
    TempDir dir;
    const std::string run = dir.str() + "/run", log = dir.str() + "/log";
    const pid_t pid = spawn_streamsink(
        tiny_train_args(run, "--set train.steps=6 --set train.eval_interval=0 --set train.log_interval=1 "
                             "--set train.checkpoint_interval=2 --set train.threads=1 --set train.nan_policy=" +
                                 std::string(c.policy)),
        {{"STREAMSINK_FAULT_NAN_STEP", std::to_string(c.step)}, {"STREAMSINK_FAULT_NAN_IN", "weights"},
         {"STREAMSINK_FAULT_NAN_VALUE", c.value}},
        log);
    const int rc = wait_exit(pid, 120);
    expect_stopped_for_non_finite_weights(run, rc, slurp(log), c.step, "step_0000002", c.policy);
  }
}

// The ranks agree on the check as on the loss: weights made non-finite on rank 1 alone (ranks hold the same weights in
// a real run; here the hook poisons one) stop rank 0 too, at the same step, and rank 0 names the finite checkpoint.
TEST(Faults, NonFiniteWeightsOnOneRankStopEveryRank) {
  TempDir dir;
  const std::string run = dir.str() + "/run", log = dir.str() + "/log";
  const pid_t pid = spawn_streamsink(
      "launch --nproc 2 -- " +
          tiny_train_args(run, "--set train.steps=6 --set train.eval_interval=0 --set train.checkpoint_interval=2 "
                               "--set train.threads=1 --set train.timeout_s=10 --set train.batch_size=4"),
      {{"STREAMSINK_FAULT_NAN_STEP", "3"}, {"STREAMSINK_FAULT_NAN_IN", "weights"}, {"STREAMSINK_FAULT_RANK", "1"}},
      log);
  const int rc = wait_exit(pid, 90);
  const std::string out = slurp(log);
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(rc, 128) << out;
  const std::string stop = "[^\n]*error: step 3: the optimizer update[^\n]*inf or NaN ";
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[rank 0\\]" + stop + "on another rank[^\n]*Last checkpoint with " +
                                                "finite weights: " + run + "/checkpoints/step_0000002 ")))
      << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\\[rank 1\\]" + stop + "in '"))) << out;
  EXPECT_EQ(latest_name(run), "step_0000002");
  EXPECT_EQ(checkpoint_dirs(run), std::vector<std::string>{"step_0000002"});
}

// A real blow-up, as the audit reproduced it (`--set train.lr=1e38 --set train.grad_clip=0`, no warm-up, a checkpoint
// every step): AdamW's first step moves every weight by lr / (1 - beta1) = 1e39, past float's range. Before,
// nan_policy=stop named that checkpoint "last good", and skip ended "done" with every checkpoint full of inf. Then the
// same from a finite checkpoint: a run resumed at step 2 with lr 3e38 blows up at step 3, and names step 2's.
TEST(Faults, ARealLearningRateBlowUpWritesNoNonFiniteCheckpointAndNamesAFiniteOne) {
  for (const std::string policy : {"stop", "skip"}) {
    SCOPED_TRACE(policy);
    TempDir dir;
    const std::string run = dir.str() + "/run";
    const std::string blow_up = " --set train.lr=1e38 --set train.warmup_steps=0 --set train.grad_clip=0 "
                                "--set train.nan_policy=" + policy;
    auto r = run_streamsink(tiny_train_args(run, "--set train.steps=8 --set train.eval_interval=0 --set "
                                                 "train.checkpoint_interval=1 --set train.threads=1" + blow_up));
    expect_stopped_for_non_finite_weights(run, r.exit_code, r.output, 1, "", policy);

    const std::string resumed = dir.str() + "/resumed";
    const std::string common = "--set train.eval_interval=0 --set train.checkpoint_interval=2 --set train.threads=1";
    r = run_streamsink(tiny_train_args(resumed, common + " --set train.steps=2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_streamsink(tiny_train_args(resumed, common + " --set train.steps=8 --resume auto --set train.lr=3e38 "
                                                "--set train.warmup_steps=0 --set train.grad_clip=0 "
                                                "--set train.nan_policy=" + policy));
    expect_stopped_for_non_finite_weights(resumed, r.exit_code, r.output, 3, "step_0000002", policy);
  }
}

// A write that fails half-way through the checkpoint of step 4 (after model.safetensors, at optimizer.safetensors):
// step 2's checkpoint and `latest` stay as they were, no half checkpoint is left, the run stops non-zero saying so,
// and --resume auto from step 2 then reaches the uninterrupted run's weights.
TEST(Faults, AFailedCheckpointWriteLeavesThePreviousCheckpointAndLatestIntact) {
  TempDir dir;
  const std::string common = "--set train.steps=6 --set train.eval_interval=0 --set train.log_interval=1 "
                             "--set train.checkpoint_interval=2 --set train.threads=1";
  const std::string run = dir.str() + "/run", log = dir.str() + "/log";
  const pid_t pid = spawn_streamsink(tiny_train_args(run, common),
                                     {{"STREAMSINK_FAULT_CHECKPOINT_WRITE_FAIL_STEP", "4"}}, log);
  const int rc = wait_exit(pid, 120);
  const auto out = slurp(log);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("checkpoint of step 4 failed"), std::string::npos) << out;
  EXPECT_NE(out.find("optimizer.safetensors: write failed"), std::string::npos) << out;
  EXPECT_NE(out.find("are unchanged (latest: step_0000002)"), std::string::npos) << out;
  EXPECT_EQ(latest_name(run), "step_0000002");
  EXPECT_EQ(check_latest_loads(run, "after the failed write"), 2);
  EXPECT_FALSE(fs::exists(run + "/checkpoints/step_0000004"));
  EXPECT_FALSE(partial_write_left(run)) << "the half-written checkpoint must be removed";

  auto resumed = run_streamsink(tiny_train_args(run, common + " --resume auto"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto ref = run_streamsink(tiny_train_args(dir.str() + "/ref", common));
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_TRUE(read_file(run + "/checkpoints/step_0000006/model.safetensors") ==
              read_file(dir.str() + "/ref/checkpoints/step_0000006/model.safetensors"));
}

TEST(Faults, AMalformedHookVariableIsAnErrorNotIgnored) {
  TempDir dir;
  const pid_t pid = spawn_streamsink(tiny_train_args(dir.str() + "/run", "--set train.steps=2"),
                                     {{"STREAMSINK_FAULT_NAN_STEP", "three"}}, dir.str() + "/log");
  EXPECT_EQ(wait_exit(pid, 60), 1);
  EXPECT_NE(slurp(dir.str() + "/log").find("STREAMSINK_FAULT_NAN_STEP"), std::string::npos);
}
