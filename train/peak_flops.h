// The peak FLOP/s that MFU is measured against: a table for known GPUs (dense, no sparsity), and for CPUs a
// measured fp32 matmul peak (`streamsink bench-peak`), cached per CPU model and thread count.
#pragma once
#include <string>

namespace streamsink {

// Dense peak of a known GPU for "bf16" or "fp32" (TF32 is not assumed); 0 when the name is not in the table.
double gpu_peak_flops(const std::string& device_name, const std::string& precision);

struct CpuPeak {
  double flops = 0;     // best fp32 matmul FLOP/s measured
  int threads = 0;      // intra-op threads used
  std::string cpu;      // /proc/cpuinfo model name
  bool cached = false;  // read from the cache rather than measured now
};
// Best of a few n×n fp32 matmuls (at::mm, the same BLAS the trainer uses) over `seconds`.
CpuPeak measure_cpu_peak(int threads, int64_t n = 1024, double seconds = 2.0);
// The cached figure for this CPU and thread count, measuring (and caching) it when absent or `force`.
CpuPeak cpu_peak(int threads, bool force = false);
std::string cpu_model_name();

}  // namespace streamsink
