#include "train/peak_flops.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/device.h"
#include "common/error.h"
#include "common/file_util.h"

namespace streamsink {

double gpu_peak_flops(const std::string& name, const std::string& precision) {
  struct Row {
    const char* match;
    double bf16, fp32;  // TFLOP/s, dense
  };
  // NVIDIA data sheets, dense (not the 2:4-sparse figures). Matched by substring in this order, so every name
  // that contains another comes first: "H100 NVL" and "H100 PCIe" before "H100", "L40S" and "L40" before "L4".
  // V100 has no bf16 tensor cores: no bf16 figure (0 = no MFU rather than a wrong one).
  static const Row rows[] = {
      {"H100 PCIe", 756, 51}, {"H100 NVL", 835, 60}, {"H100", 989, 67},   {"GH200", 989, 67},
      {"H200 NVL", 835, 60},  {"H200", 989, 67},     {"B200", 2250, 80},  {"A100", 312, 19.5},
      {"A10G", 125, 31},      {"A10", 125, 31},      {"L40S", 362, 91.6}, {"L40", 181, 90.5},
      {"L4", 121, 30},        {"V100", 0, 15.7},     {"RTX 4090", 165, 82.6}, {"RTX 3090", 71, 35.6},
  };
  for (const auto& r : rows)
    if (name.find(r.match) != std::string::npos) return (precision == "bf16" ? r.bf16 : r.fp32) * 1e12;
  return 0;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown cpu";
}

double measure_matmul_flops(c10::Device device, const std::string& precision, int64_t n, double seconds) {
  if (precision != "fp32" && precision != "bf16") throw Error("matmul peak: precision '" + precision + "': expected fp32 or bf16");
  const auto dtype = precision == "bf16" ? at::kBFloat16 : at::kFloat;
  // A generator of its own: the trainer measures after restoring a checkpoint's random state, which must not move.
  // The operands are drawn on the CPU and copied, so no device generator moves either: random tiles of at most
  // 1024 x 1024, repeated (drawing all of an 8192-square operand on the CPU took 3.2-5.2 s here, one thread).
  at::Generator gen = at::detail::createCPUGenerator(0);
  const int64_t k = std::min<int64_t>(n, 1024), reps = (n + k - 1) / k;
  const auto draw = [&] {
    auto tile = at::randn({k, k}, gen, at::TensorOptions().dtype(at::kFloat)).to(device, dtype);
    return tile.repeat({reps, reps}).narrow(0, 0, n).narrow(1, 0, n).contiguous();
  };
  auto a = draw(), b = draw();
  auto c = at::empty({n, n}, at::TensorOptions().dtype(dtype).device(device));
  at::mm_out(c, a, b);  // warm-up (and cuBLAS's handle and workspace)
  synchronize(device);
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) at::mm_out(c, a, b);
    synchronize(device);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 4 * 2.0 * n * n * n / dt);
  }
  return best;
}

CpuPeak measure_cpu_peak(int threads, const std::string& precision, int64_t n, double seconds) {
  const int old = at::get_num_threads();
  at::set_num_threads(threads);
  double best = 0;
  try {
    best = measure_matmul_flops(c10::Device(c10::kCPU), precision, n, seconds);
  } catch (...) {
    at::set_num_threads(old);
    throw;
  }
  at::set_num_threads(old);
  return {best, threads, cpu_model_name(), false, precision};
}

std::string peak_cache_path() {
  if (const char* p = std::getenv("STREAMSINK_PEAK_CACHE"); p && *p) return p;
  if (const char* c = std::getenv("STREAMSINK_CACHE"); c && *c) return std::string(c) + "/cpu_peak.json";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/streamsink/cpu_peak.json";
}

namespace {

// fp32's key is the one earlier versions wrote, so their caches stay good
std::string peak_key(int threads, const std::string& precision) {
  return cpu_model_name() + " | threads=" + std::to_string(threads) + (precision == "fp32" ? "" : " | " + precision);
}

nlohmann::json read_peak_cache(const std::string& path) {
  try {
    if (std::filesystem::exists(path)) return nlohmann::json::parse(read_file(path));
  } catch (...) {
    // a damaged cache is re-measured, not fatal
  }
  return nlohmann::json::object();
}

}  // namespace

std::optional<CpuPeak> cached_cpu_peak(int threads, const std::string& precision) {
  const auto cache = read_peak_cache(peak_cache_path());
  const auto it = cache.find(peak_key(threads, precision));
  if (it == cache.end() || !it->is_number()) return std::nullopt;
  return CpuPeak{it->get<double>(), threads, cpu_model_name(), true, precision};
}

CpuPeak cpu_peak(int threads, const std::string& precision, bool force) {
  if (!force)
    if (auto c = cached_cpu_peak(threads, precision)) return *c;
  auto p = measure_cpu_peak(threads, precision);
  const std::string path = peak_cache_path();
  auto cache = read_peak_cache(path);  // read again: another process may have added its figures meanwhile
  cache[peak_key(threads, precision)] = p.flops;
  try {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    write_file_atomic(path, cache.dump(2) + "\n");
  } catch (...) {
    // read-only home: the figure is still good for this run
  }
  return p;
}

}  // namespace streamsink
