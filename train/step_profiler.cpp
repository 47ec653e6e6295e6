#include "train/step_profiler.h"

#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "common/device.h"
#include "common/error.h"
#include "common/file_util.h"

namespace streamsink {

namespace prof = torch::autograd::profiler;

namespace {

std::vector<ProfileEntry> sorted_entries(const std::map<std::string, ProfileEntry>& m) {
  std::vector<ProfileEntry> v;
  for (const auto& [name, e] : m) v.push_back(e);
  std::sort(v.begin(), v.end(), [](const ProfileEntry& a, const ProfileEntry& b) {
    return a.total_ms != b.total_ms ? a.total_ms > b.total_ms : a.name < b.name;
  });
  return v;
}

ProfileSummary summarize(const std::vector<prof::KinetoEvent>& events, int64_t steps, double wall_ms) {
  ProfileSummary s;
  s.steps = steps;
  s.wall_ms = wall_ms;
  std::map<std::string, ProfileEntry> cpu, gpu;
  for (const auto& e : events) {
    const auto kind = static_cast<libkineto::ActivityType>(e.activityType());
    const double ms = e.durationNs() * 1e-6;
    ProfileEntry* entry = nullptr;
    if (kind == libkineto::ActivityType::CONCURRENT_KERNEL) {
      s.gpu_kernel_ms += ms;
      entry = &gpu[e.name()];
    } else if (kind == libkineto::ActivityType::GPU_MEMCPY || kind == libkineto::ActivityType::GPU_MEMSET) {
      s.gpu_memcpy_ms += ms;
    } else if (kind == libkineto::ActivityType::CPU_OP && e.deviceType() == c10::DeviceType::CPU) {
      entry = &cpu[e.name()];
    }
    if (entry) {
      entry->name = e.name();
      ++entry->calls;
      entry->total_ms += ms;
    }
  }
  s.cpu_ops = sorted_entries(cpu);
  s.gpu_kernels = sorted_entries(gpu);
  return s;
}

}  // namespace

std::string format_profile(const ProfileSummary& s, int top) {
  std::string out;
  char line[512];
  const double per_step = s.steps > 0 ? s.wall_ms / s.steps : 0;
  std::snprintf(line, sizeof line, "profile: %lld step(s), %.2f ms wall, %.2f ms a step\n",
                static_cast<long long>(s.steps), s.wall_ms, per_step);
  out += line;
  if (s.gpu_kernels.empty()) {
    out += "gpu: no kernels recorded (a CPU run)\n";
  } else {
    std::snprintf(line, sizeof line,
                  "gpu: kernels %.2f ms (busy %.1f%% of the wall time), copies and sets %.2f ms\n", s.gpu_kernel_ms,
                  s.wall_ms > 0 ? 100 * s.gpu_kernel_ms / s.wall_ms : 0.0, s.gpu_memcpy_ms);
    out += line;
  }
  auto table = [&](const char* title, const std::vector<ProfileEntry>& v, double whole) {
    std::snprintf(line, sizeof line, "\n%s\n| ms | %% | calls | name |\n| ---: | ---: | ---: | --- |\n", title);
    out += line;
    for (size_t i = 0; i < v.size() && static_cast<int>(i) < top; ++i) {
      std::string name = v[i].name.size() > 160 ? v[i].name.substr(0, 157) + "..." : v[i].name;
      std::snprintf(line, sizeof line, "| %.3f | %.1f | %lld | %s |\n", v[i].total_ms,
                    whole > 0 ? 100 * v[i].total_ms / whole : 0.0, static_cast<long long>(v[i].calls), name.c_str());
      out += line;
    }
  };
  if (!s.gpu_kernels.empty()) table("GPU kernels (share of kernel time):", s.gpu_kernels, s.gpu_kernel_ms);
  table("CPU operators (inclusive time, share of the wall time; nested ops count in their callers too):", s.cpu_ops,
        s.wall_ms);
  return out;
}

std::pair<int64_t, int64_t> parse_profile_window(const std::string& spec) {
  if (spec.empty()) return {0, 0};
  const auto colon = spec.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    size_t a = 0, b = 0;
    const int64_t first = std::stoll(spec.substr(0, colon), &a);
    const int64_t count = std::stoll(spec.substr(colon + 1), &b);
    if (a != colon || b != spec.size() - colon - 1 || first < 1 || count < 1) throw std::invalid_argument("range");
    return {first, count};
  } catch (const std::exception&) {
    throw Error("--profile: expected FIRST:COUNT with FIRST >= 1 and COUNT >= 1 (steps to profile), got '" + spec + "'");
  }
}

StepProfiler::StepProfiler(int64_t first, int64_t count, std::string out_dir, c10::Device device)
    : first_(first), count_(count), out_dir_(std::move(out_dir)), device_(device) {}

StepProfiler::~StepProfiler() {
  if (on_) (void)prof::disableProfiler();  // an exception unwound the loop: stop quietly, write nothing
}

void StepProfiler::before_step(int64_t step) {
  if (count_ <= 0 || done_ || on_ || step != first_) return;
  std::set<torch::profiler::impl::ActivityType> acts{torch::profiler::impl::ActivityType::CPU};
  if (device_.is_cuda()) acts.insert(torch::profiler::impl::ActivityType::CUDA);
  const torch::profiler::impl::ProfilerConfig cfg(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(cfg, acts);
  synchronize(device_);
  prof::enableProfiler(cfg, acts);
  t0_ = std::chrono::steady_clock::now();
  on_ = true;
}

void StepProfiler::after_step(int64_t step) {
  if (!on_) return;
  ++recorded_;
  if (step >= first_ + count_ - 1) stop();
}

void StepProfiler::finish() {
  if (on_) stop();  // the window was cut short: the budget, a signal or a stop
}

void StepProfiler::stop() {
  synchronize(device_);
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
  auto result = prof::disableProfiler();
  on_ = false;
  done_ = true;
  const ProfileSummary s = summarize(result->events(), recorded_, wall_ms);
  const std::string report = format_profile(s);
  write_file_atomic(out_dir_ + "/profile.txt", report);
  result->save(out_dir_ + "/profile.json");
  std::printf("\n[train] profiled steps %lld-%lld: %s/profile.txt, %s/profile.json\n", static_cast<long long>(first_),
              static_cast<long long>(first_ + recorded_ - 1), out_dir_.c_str(), out_dir_.c_str());
  std::fflush(stdout);
}

}  // namespace streamsink
