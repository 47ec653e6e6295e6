// Where a training step's time goes (issue 8): LibTorch's own profiler (Kineto) over a window of steps, on the CPU
// or a GPU, written as RUN/profile.txt (the ops and kernels that take the time) and RUN/profile.json (a Chrome
// trace: chrome://tracing or https://ui.perfetto.dev). `streamsink train ... --profile FIRST:COUNT`.
//
// The window should sit after warm-up and away from the steps whose throughput is reported: profiling slows the
// steps it records.
#pragma once
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace streamsink {

// One kind of work in the profile: an operator on the CPU or a kernel on the GPU.
struct ProfileEntry {
  std::string name;
  int64_t calls = 0;
  double total_ms = 0;  // summed durations (CPU ops: inclusive of the ops they call)
};

struct ProfileSummary {
  int64_t steps = 0;
  double wall_ms = 0;                    // the window, first step's start to last step's end (device synced)
  double gpu_kernel_ms = 0;              // summed GPU kernel time (one stream: at most wall_ms)
  double gpu_memcpy_ms = 0;              // summed GPU copies and sets
  std::vector<ProfileEntry> cpu_ops;     // by total time, largest first
  std::vector<ProfileEntry> gpu_kernels; // by total time, largest first
};

// The report: the window, the GPU's busy share when there is one, and the top `top` of each list.
std::string format_profile(const ProfileSummary& s, int top = 20);

// "FIRST:COUNT" (FIRST >= 1, COUNT >= 1) → {FIRST, COUNT}; "" → {0, 0} (off). Error naming --profile otherwise.
std::pair<int64_t, int64_t> parse_profile_window(const std::string& spec);

class StepProfiler {
 public:
  // Profiles steps first .. first + count - 1 (1-based, as the progress line counts) into out_dir. count 0: off.
  StepProfiler(int64_t first, int64_t count, std::string out_dir, c10::Device device);
  ~StepProfiler();
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;

  // Call before step `step` runs (1-based): starts the profiler at the window's first step.
  void before_step(int64_t step);
  // Call when step `step`'s update is done, before evaluation, logging or checkpoints (which the window leaves
  // out): stops the profiler and writes the report after the window's last step.
  void after_step(int64_t step);
  // Call when training ends: a window still open is closed and written with the steps it holds.
  void finish();

 private:
  void stop();
  int64_t first_, count_, recorded_ = 0;
  std::string out_dir_;
  c10::Device device_;
  bool on_ = false, done_ = false;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace streamsink
