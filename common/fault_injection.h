// TEST-ONLY fault-injection hooks. tests/test_faults.cpp sets these environment variables to make rare failures
// happen on demand (a crash in the middle of a checkpoint, a rank dying, a NaN, a failed write). They are read once;
// unset (always, outside tests) every hook is one branch on a cached struct and does nothing. Never set them in
// production. Steps are numbered as in metrics.jsonl: step N is the N-th optimizer step (1-based).
//
//   STREAMSINK_FAULT_SLOW_CHECKPOINT_MS=MS         sleep MS between the files of every checkpoint (train/checkpoint.cpp),
//                                                 so that a SIGKILL at a random moment often lands mid-write
//   STREAMSINK_FAULT_CHECKPOINT_WRITE_FAIL_STEP=N  the checkpoint of step N fails half-written, as a failed write
//                                                 (disk full, EIO) would: an Error (train/checkpoint.cpp)
//   STREAMSINK_FAULT_NAN_STEP=N[,M...]             step N's gradients become NaN before the all-reduce (train/trainer.cpp)
//   STREAMSINK_FAULT_NAN_IN=grad|loss|weights      ...or its loss instead, or the weights right after its optimizer
//                                                 update (default grad)
//   STREAMSINK_FAULT_NAN_VALUE=nan|inf             the value written: NaN (default) or +inf
//   STREAMSINK_FAULT_EXIT_AT_STEP=N                _exit(9) at the start of step N: a crash, no checkpoint, no cleanup
//                                                 (train/trainer.cpp)
//   STREAMSINK_FAULT_STOP_AT_STEP=N                at the end of step N, a stop request as if SIGTERM had reached
//                                                 this rank alone (train/trainer.cpp: the ranks agree to stop)
//   STREAMSINK_FAULT_RANK=R                        the NaN, exit and stop hooks fire on rank R only (default: every rank)
// A malformed value is an Error naming the variable.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace streamsink::fault {

enum class NanIn { kGrad, kLoss, kWeights };  // where STREAMSINK_FAULT_NAN_STEP strikes

struct Faults {
  int64_t slow_checkpoint_ms = 0;
  int64_t checkpoint_write_fail_step = -1;
  std::vector<int64_t> nan_steps;
  NanIn nan_in = NanIn::kGrad;
  float nan_value = std::numeric_limits<float>::quiet_NaN();  // or +inf
  int64_t exit_at_step = -1;
  int64_t stop_at_step = -1;
  int64_t rank = -1;
};

// The hooks, parsed from the environment on first use.
const Faults& faults();

// Between two files of a checkpoint: sleeps STREAMSINK_FAULT_SLOW_CHECKPOINT_MS.
void checkpoint_pause();
// Throws the Error a failed write of `path` would, when `step` is STREAMSINK_FAULT_CHECKPOINT_WRITE_FAIL_STEP.
void maybe_fail_checkpoint_write(int64_t step, const std::string& path);
// True when `rank` must poison `where` at step `step` (with faults().nan_value).
bool nan_at(int64_t step, int rank, NanIn where);
// _exit(9) when `rank` must die at the start of step `step`.
void maybe_exit(int64_t step, int rank);
// True when `rank` must ask to stop at the end of step `step`.
bool stop_at(int64_t step, int rank);

}  // namespace streamsink::fault
