// Checkpoints (train/checkpoint.h) on the CPU: a round trip restores the weights, the state and the random stream
// (the CPU generator continues exactly where it was when the checkpoint was written, as an uninterrupted run's would);
// a missing checkpoint file is an error naming it. The GPU's generator: test_cuda.cpp; a corrupt generator state:
// test_bad_input.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <thread>

#include "common/file_util.h"
#include "model/safetensors.h"
#include "tests/checkpoint_fixture.h"

using namespace streamsink;
using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

// The test-only pause between the files of a checkpoint (common/fault_injection.h, read once per process): every
// step of a write lasts long enough for a watching thread to see the folder in each of its states.
[[maybe_unused]] const bool kSlowCheckpoints = [] {
  setenv("STREAMSINK_FAULT_SLOW_CHECKPOINT_MS", "15", 0);
  return true;
}();

std::vector<std::string> checkpoint_names(const std::string& run) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(fs::path(run) / "checkpoints"))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_name(const std::string& run) {
  const auto path = run + "/checkpoints/latest";
  if (!fs::exists(path)) return "";
  std::string s = read_file(path);
  return s.substr(0, s.find('\n'));
}

}  // namespace

TEST(Checkpoint, ResumeRestoresWeightsStateAndTheCpuRandomStream) {
  expect_random_stream_continues_after_resume(c10::Device(c10::kCPU));
}

// Every field of the training state comes back as written: distinct values in each, so a field left out of the
// file (tokens_seen restarting at 0 would shift every emergence plot's x-axis after a resume) or read into its
// neighbour shows.
TEST(Checkpoint, EveryFieldOfTheTrainingStateComesBack) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  TrainState s;
  s.step = 11;
  s.tokens_seen = 123456;
  s.skipped_steps = 2;
  s.cursor = LoaderCursor{3, 9};
  s.world_size = 5;
  s.elapsed_s = 4.5;
  s.train_windows = 777;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 1);
  CheckpointSubject b(c10::Device(c10::kCPU));
  TrainState r;
  load_checkpoint(latest_checkpoint(dir.str()), b.model, *b.opt, r);
  EXPECT_EQ(r.step, 11);
  EXPECT_EQ(r.tokens_seen, 123456);
  EXPECT_EQ(r.skipped_steps, 2);
  EXPECT_EQ(r.cursor.epoch, 3);
  EXPECT_EQ(r.cursor.step_in_epoch, 9);
  EXPECT_EQ(r.world_size, 5);
  EXPECT_EQ(r.elapsed_s, 4.5);
  EXPECT_EQ(r.train_windows, 777);
}

TEST(Checkpoint, ACpuCheckpointHoldsNoCudaState) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  const auto path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, TrainState{}, "", 1);
  const auto o = load_safetensors(path + "/optimizer.safetensors");
  EXPECT_EQ(o.count("rng.cpu"), 1u);
  EXPECT_EQ(o.count("rng.cuda"), 0u);
}

TEST(Checkpoint, AMissingOptimizerFileIsNamed) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  const auto path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, TrainState{}, "", 1);
  std::filesystem::remove(path + "/optimizer.safetensors");
  CheckpointSubject b(c10::Device(c10::kCPU));
  TrainState s;
  expect_error([&] { load_checkpoint(path, b.model, *b.opt, s); }, {"optimizer.safetensors"});
}

// Defence in depth (the trainer stops before it saves them): weights holding an inf or a NaN are refused, with an
// Error naming the folder and the tensor; nothing is written, and the previous checkpoint and `latest` stay.
TEST(Checkpoint, NonFiniteWeightsAreRefusedAndLatestStays) {
  for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    TempDir dir;
    CheckpointSubject a(c10::Device(c10::kCPU));
    TrainState s;
    s.step = 1;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3);
    const auto named = a.model->named_parameters();
    const std::string victim = named[named.size() / 2].key();
    {
      torch::NoGradGuard g;
      named[named.size() / 2].value()[0].fill_(bad);  // one element of one tensor is enough
    }
    s.step = 2;
    expect_error([&] { save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3); },
                 {"checkpoint of step 2 failed", (dir.path() / "checkpoints" / "step_0000002").string(),
                  "refusing to write weights that are not finite", "'" + victim + "'", "1 of " +
                  std::to_string(named.size()) + " tensors", "(latest: step_0000001)"});
    EXPECT_EQ(checkpoint_names(dir.str()), std::vector<std::string>{"step_0000001"});
    EXPECT_EQ(latest_name(dir.str()), "step_0000001");
    EXPECT_EQ(last_finite_checkpoint(dir.str()), (dir.path() / "checkpoints" / "step_0000001").string());
  }
}

// last_finite_checkpoint: `latest` when its weights are finite; else the newest finite one before it (a run written
// before save_checkpoint refused non-finite weights), never one past `latest` (from before a rewind); "" when none.
TEST(Checkpoint, LastFiniteCheckpointSkipsNonFiniteWeightsAndLooksNoFurtherThanLatest) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  EXPECT_EQ(last_finite_checkpoint(dir.str()), "");  // no run at all
  TrainState s;
  for (int64_t step : {1, 2, 3, 4}) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 10);
  }
  const fs::path root = dir.path() / "checkpoints";
  const auto poison = [&](const std::string& name) {  // as an older streamsink would have written it
    const auto path = (root / name / "model.safetensors").string();
    TensorMap w = load_safetensors(path);
    w.begin()->second.fill_(std::numeric_limits<float>::infinity());
    save_safetensors(path, w);
  };
  // rewound to step 3: step 4 is from another timeline
  write_file_atomic((root / "latest").string(), "step_0000003\n");
  EXPECT_EQ(last_finite_checkpoint(dir.str()), (root / "step_0000003").string());
  poison("step_0000003");
  poison("step_0000002");
  EXPECT_EQ(last_finite_checkpoint(dir.str()), (root / "step_0000001").string());
  poison("step_0000001");
  EXPECT_EQ(last_finite_checkpoint(dir.str()), "");
}

// rewind_checkpoints: `latest` names the rewind point at once, and the checkpoints past it move into
// abandoned_after_step_N/ (kept, never resumed or pruned); a second rewind to the same step takes a new folder
// (review, session 16: a crash after a rewind resumed the abandoned run's latest, and pruning counted its checkpoints).
TEST(Checkpoint, ARewindNamesItsPointLatestAndMovesTheAbandonedCheckpointsAside) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  TrainState s;
  for (int64_t step : {1, 2, 3}) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 10);
  }
  const fs::path root = dir.path() / "checkpoints";
  const std::string step3_weights = read_file((root / "step_0000003" / "model.safetensors").string());
  EXPECT_EQ(rewind_checkpoints((root / "step_0000003").string(), 3), "");  // nothing past the latest
  EXPECT_EQ(latest_name(dir.str()), "step_0000003");
  EXPECT_EQ(rewind_checkpoints((root / "step_0000001").string(), 1), (root / "abandoned_after_step_0000001").string());
  EXPECT_EQ(latest_name(dir.str()), "step_0000001");
  EXPECT_EQ(latest_checkpoint(dir.str()), (root / "step_0000001").string());
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"abandoned_after_step_0000001", "step_0000001"}));
  EXPECT_EQ(read_file((root / "abandoned_after_step_0000001" / "step_0000003" / "model.safetensors").string()),
            step3_weights);
  EXPECT_TRUE(fs::exists(root / "abandoned_after_step_0000001" / "step_0000002" / "state.json"));
  // the rewound run's own checkpoints: pruning never touches the abandoned ones
  s.step = 2;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 1);
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"abandoned_after_step_0000001", "step_0000002"}));
  EXPECT_TRUE(fs::exists(root / "abandoned_after_step_0000001" / "step_0000003"));
  s.step = 3;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  EXPECT_EQ(rewind_checkpoints((root / "step_0000002").string(), 2), (root / "abandoned_after_step_0000002").string());
  s.step = 3;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  EXPECT_EQ(rewind_checkpoints((root / "step_0000002").string(), 2), (root / "abandoned_after_step_0000002.2").string());
  EXPECT_EQ(latest_name(dir.str()), "step_0000002");
}

// keep_checkpoints: the newest `keep` complete checkpoints stay (by step), older ones and leftovers of crashed
// writes go; `latest` names the newest.
TEST(Checkpoint, PruningKeepsTheNewestKAndRemovesLeftoversOfCrashedWrites) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  fs::create_directories(dir.path() / "checkpoints" / "step_0000009.tmp-999999");  // a crashed write's folder
  TrainState s;
  for (int64_t step = 1; step <= 5; ++step) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  }
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000004", "step_0000005"}));
  EXPECT_EQ(latest_name(dir.str()), "step_0000005");
  s.step = 6;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3);  // a larger keep removes nothing more
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000004", "step_0000005", "step_0000006"}));
  s.step = 7;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 1);
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000007"}));
  EXPECT_EQ(latest_name(dir.str()), "step_0000007");
  // Past step 9,999,999 the names grow a digit: pruning goes by step, not by name.
  for (int64_t step : {9'999'999, 10'000'000, 10'000'001}) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  }
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_10000000", "step_10000001"}));
}

// Atomicity, watched while it happens: a thread reads `latest` over and over during three checkpoint writes (each
// slowed down between its files); whenever `latest` names a checkpoint, that folder holds every file of it (it
// only ever names complete checkpoints), and no step_N folder newer than it (without a .tmp- suffix) is ever half
// written.
TEST(Checkpoint, LatestOnlyEverNamesACompleteCheckpointWhileOneIsWritten) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  const fs::path root = dir.path() / "checkpoints";
  std::atomic<bool> done{false};
  std::atomic<int> looks{0};
  std::vector<std::string> problems;
  std::thread watcher([&] {
    const char* files[] = {"config.yaml", "model.safetensors", "optimizer.safetensors", "state.json"};
    while (!done) {
      std::error_code ec;
      const std::string latest = latest_name(dir.str());
      if (!latest.empty()) {
        ++looks;
        for (const char* f : files)
          if (!fs::exists(root / latest / f, ec)) problems.push_back("latest names " + latest + " without " + f);
      }
      for (const auto& e : fs::directory_iterator(root, ec)) {
        const auto n = e.path().filename().string();
        // Older folders may be mid-removal (pruning); a folder newer than `latest` must already be whole.
        if (n.rfind("step_", 0) != 0 || n.find(".tmp-") != std::string::npos || n <= latest) continue;
        if (!fs::exists(e.path() / "state.json", ec)) problems.push_back(n + " exists half written");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  TrainState s;
  for (int64_t step = 1; step <= 3; ++step) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3);
  }
  // A run resumed from step 2 into the same folder writes step 3 again, while `latest` names it: swapped in whole.
  s.tokens_seen = 12345;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3);
  done = true;
  watcher.join();
  EXPECT_GT(looks.load(), 10) << "the watcher never saw `latest`";
  ASSERT_TRUE(problems.empty()) << problems.size() << " problems, the first: " << problems.front();
  EXPECT_EQ(latest_name(dir.str()), "step_0000003");
  EXPECT_NE(read_file((root / "step_0000003" / "state.json").string()).find("12345"), std::string::npos)
      << "the rewrite did not replace the old step 3";
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000001", "step_0000002", "step_0000003"}))
      << "the old step 3 was left behind";
}

// The fallback of filesystems without RENAME_EXCHANGE (two renames: the old folder aside, the new one in place):
// the step's folder ends up holding the new checkpoint and nothing else is left; if the second rename fails, the
// old folder goes back where it was.
TEST(Checkpoint, TheTwoRenameFallbackReplacesAFolderOrPutsTheOldOneBack) {
  TempDir dir;
  const fs::path final_dir = dir.path() / "step_0000003", tmp = dir.path() / "step_0000003.tmp-1";
  fs::create_directories(final_dir);
  fs::create_directories(tmp);
  write_file_atomic((final_dir / "state.json").string(), "old");
  write_file_atomic((tmp / "state.json").string(), "new");
  replace_checkpoint_dir(tmp, final_dir, /*try_exchange=*/false);
  EXPECT_EQ(read_file((final_dir / "state.json").string()), "new");
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir.path())) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"step_0000003"});

  // The new folder is gone before its rename (as a failed rename would leave it): an error, and the old one stays.
  EXPECT_ANY_THROW(replace_checkpoint_dir(dir.path() / "step_0000003.tmp-2", final_dir, false));
  EXPECT_EQ(read_file((final_dir / "state.json").string()), "new");
  left.clear();
  for (const auto& e : fs::directory_iterator(dir.path())) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"step_0000003"}) << "the old folder was not put back";
}

// A crash between the fallback's two renames leaves the step's previous copy as step_N.old-PID and `latest` naming
// a step that is not there. Resume says where the copy is; later checkpoints' pruning keeps it (the only copy) until
// that step is complete again.
TEST(Checkpoint, ACrashInsideTheFallbackWindowKeepsTheOldCopyAndResumeNamesIt) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  TrainState s;
  for (int64_t step = 1; step <= 3; ++step) {
    s.step = step;
    save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 3);
  }
  const fs::path root = dir.path() / "checkpoints";
  fs::rename(root / "step_0000003", root / "step_0000003.old-999");  // the state a crash inside the window leaves
  try {
    latest_checkpoint(dir.str());
    ADD_FAILURE() << "resume from a latest that names a missing step was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("not a complete checkpoint"), std::string::npos) << msg;
    EXPECT_NE(msg.find((root / "step_0000003.old-999").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("rename it to step_0000003"), std::string::npos) << msg;
  }
  s.step = 4;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000002", "step_0000003.old-999", "step_0000004"}))
      << "pruning removed the only copy of step 3";
  s.step = 3;
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 2);
  EXPECT_EQ(checkpoint_names(dir.str()), (std::vector<std::string>{"step_0000003", "step_0000004"}))
      << "the old copy outlived a complete step 3";
}

// The resume check reads the checkpoint's own config for its data-order keys only: a config written before a check
// grew stricter still resumes (here eval_batches, the key eval_sequences replaced in session 10, which a config
// given to `train` is refused for), and a real difference is still named.
TEST(Checkpoint, TheResumeCheckReadsAnOlderConfigThatTodaysChecksWouldRefuse) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  TrainState s;
  s.step = 1;
  s.world_size = 1;
  const std::string path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 1);
  std::string yaml = read_file(path + "/config.yaml");
  const auto at = yaml.find("eval_sequences: ");
  ASSERT_NE(at, std::string::npos) << yaml;
  yaml.replace(at, yaml.find('\n', at) - at, "eval_batches: 2");
  write_file_atomic(path + "/config.yaml", yaml);
  EXPECT_THROW(load_run_config(path + "/config.yaml"), Error) << "the edit no longer stands for a refused value";
  EXPECT_NO_THROW(check_resume_data_order(path, s, a.cfg, 1, 100));
  RunConfig other = a.cfg;
  other.train.seed += 1;
  try {
    check_resume_data_order(path, s, other, 1, 100);
    ADD_FAILURE() << "another seed was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.seed"), std::string::npos) << e.what();
  }
}

// Resuming into another run is refused with what differs named: another model (sink: none -> token loads the same
// shapes, and config.yaml would then misstate the run), other data (another count of windows for the cursor to index;
// a checkpoint from before the count was recorded skips that check). What continues the same network may change:
// init_std, keys the model does not use, a context extension.
TEST(Checkpoint, ResumingAnotherModelOrOtherDataIsRefused) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  TrainState s;
  s.step = 3;
  s.world_size = 1;
  s.train_windows = 961;
  const std::string path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, s, "", 1);
  TrainState loaded;
  CheckpointSubject b(c10::Device(c10::kCPU));
  load_checkpoint(path, b.model, *b.opt, loaded);
  EXPECT_EQ(loaded.train_windows, 961);
  EXPECT_NO_THROW(check_resume_data_order(path, loaded, a.cfg, 1, 961));
  const auto refused = [&](const RunConfig& cfg, int64_t windows, const std::string& want) {
    try {
      check_resume_data_order(path, loaded, cfg, 1, windows);
      ADD_FAILURE() << "accepted; expected a refusal naming " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  RunConfig token = a.cfg;
  token.model.sink = SinkKind::kToken;
  refused(token, 961, "model.sink: none in the checkpoint, token now");
  RunConfig heads = a.cfg;
  heads.model.n_kv_heads = heads.model.n_heads;
  refused(heads, 961, "model.n_kv_heads");
  RunConfig norm = a.cfg;
  norm.model.norm_eps = 1e-6;
  refused(norm, 961, "model.norm_eps");
  RunConfig extended = a.cfg;  // a context extension continues the same network (on the same windows here)
  extended.train.seq_len = a.cfg.seq_len();
  extended.model.context_length *= 2;
  extended.model.rope_theta = 500000;
  EXPECT_NO_THROW(check_resume_data_order(path, loaded, extended, 1, 961));
  RunConfig unused = a.cfg;  // sink ids of a model without sink tokens
  unused.model.sink_token_id = 9;
  EXPECT_NO_THROW(check_resume_data_order(path, loaded, unused, 1, 961));
  refused(a.cfg, 1113, "windows per epoch (train.data_dir: other data?): 961 in the checkpoint, 1113 now");
  RunConfig init = a.cfg;
  init.model.init_std = 0.5;
  EXPECT_NO_THROW(check_resume_data_order(path, loaded, init, 1, 961));
  loaded.train_windows = 0;  // a checkpoint from before session 9
  EXPECT_NO_THROW(check_resume_data_order(path, loaded, a.cfg, 1, 1113));
}
