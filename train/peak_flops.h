// The peak FLOP/s that MFU is measured against: a table for known GPUs (dense, no sparsity), and for CPUs a
// measured matmul peak in the training precision (`streamsink bench-peak`), cached per CPU model, thread count and
// precision: fp32, or bf16 (autocast's matmuls; CPUs with AVX512_BF16 or AMX run them several times faster).
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <optional>
#include <string>

namespace streamsink {

// Dense peak of a known GPU for "bf16" or "fp32" (TF32 is not assumed); 0 when the name is not in the table.
double gpu_peak_flops(const std::string& device_name, const std::string& precision);

struct CpuPeak {
  double flops = 0;     // best matmul FLOP/s measured in `precision`
  int threads = 0;      // intra-op threads used
  std::string cpu;      // /proc/cpuinfo model name
  bool cached = false;  // read from the cache rather than measured now
  std::string precision = "fp32";
};
// Best FLOP/s of n×n matmuls in `precision` ("fp32" or "bf16"; at::mm, the same BLAS / oneDNN / cuBLAS kernels the
// trainer's linear layers use) on `device`, in blocks of four timed over `seconds`, random operands (random tiles
// of at most 1024 x 1024, repeated; never zeros: some GPUs multiply zeros faster). On a GPU each block is bracketed by a device synchronize, so the time is the
// kernels', not their launches'; fp32 there is true fp32 unless the process allowed TF32.
double measure_matmul_flops(c10::Device device, const std::string& precision, int64_t n, double seconds);
// measure_matmul_flops on the CPU with `threads` intra-op threads.
CpuPeak measure_cpu_peak(int threads, const std::string& precision = "fp32", int64_t n = 1024, double seconds = 2.0);
// The cache's file: $STREAMSINK_PEAK_CACHE, else $STREAMSINK_CACHE/cpu_peak.json, else
// ~/.cache/streamsink/cpu_peak.json. The tests point STREAMSINK_PEAK_CACHE into the build (tests/gtest_main.cpp): a
// figure measured while CTest loads every core must not become the user's MFU denominator.
std::string peak_cache_path();
// The cached figure for this CPU, thread count and precision, if there is one (nothing is measured).
std::optional<CpuPeak> cached_cpu_peak(int threads, const std::string& precision);
// The cached figure for this CPU, thread count and precision, measuring (and caching) it when absent or `force`.
CpuPeak cpu_peak(int threads, const std::string& precision = "fp32", bool force = false);
std::string cpu_model_name();

}  // namespace streamsink
