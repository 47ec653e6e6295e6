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
  const auto opts = at::TensorOptions().dtype(precision == "bf16" ? at::kBFloat16 : at::kFloat);
  // A generator of its own: the trainer measures after restoring a checkpoint's random state, which must not move.
  // The operands are drawn on the CPU and copied, so no device generator moves either.
  at::Generator gen = at::detail::createCPUGenerator(0);
  auto a = at::randn({n, n}, gen, opts).to(device), b = at::randn({n, n}, gen, opts).to(device);
  auto c = at::empty({n, n}, opts.device(device));
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

CpuPeak cpu_peak(int threads, const std::string& precision, bool force) {
  const std::string path = peak_cache_path();
  // fp32's key is the one earlier versions wrote, so their caches stay good
  const std::string key =
      cpu_model_name() + " | threads=" + std::to_string(threads) + (precision == "fp32" ? "" : " | " + precision);
  nlohmann::json cache = nlohmann::json::object();
  try {
    if (std::filesystem::exists(path)) cache = nlohmann::json::parse(read_file(path));
  } catch (...) {
    cache = nlohmann::json::object();  // a damaged cache is re-measured, not fatal
  }
  if (!force && cache.contains(key) && cache[key].is_number())
    return {cache[key].get<double>(), threads, cpu_model_name(), true, precision};
  auto p = measure_cpu_peak(threads, precision);
  cache[key] = p.flops;
  try {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    write_file_atomic(path, cache.dump(2) + "\n");
  } catch (...) {
    // read-only home: the figure is still good for this run
  }
  return p;
}

}  // namespace streamsink
