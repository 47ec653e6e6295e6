// `streamsink bench-peak`: measures this CPU's fp32 matmul peak (the MFU denominator on CPUs) and caches it.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "common/device.h"
#include "train/peak_flops.h"

namespace streamsink::app {

int cmd_bench_peak(int argc, char** argv) {
  CLI::App app{"Measure the fp32 matmul peak of this CPU (cached for MFU), and list known GPU peaks in use",
               "streamsink bench-peak"};
  int threads = at::get_num_threads();
  bool force = true;
  app.add_option("--threads", threads, "intra-op threads")->check(CLI::PositiveNumber);
  app.add_flag("!--cached", force, "print the cached figure instead of measuring again");
  CLI11_PARSE(app, argc, argv);
  const auto p = cpu_peak(threads, force);
  std::printf("cpu=\"%s\" threads=%d fp32_matmul_gflops=%.1f source=%s\n", p.cpu.c_str(), p.threads, p.flops / 1e9,
              p.cached ? "cache" : "measured");
  for (const auto& d : cuda_device_names())
    std::printf("gpu=\"%s\" bf16_peak_tflops=%.0f fp32_peak_tflops=%.1f (data sheet)\n", d.c_str(),
                gpu_peak_flops(d, "bf16") / 1e12, gpu_peak_flops(d, "fp32") / 1e12);
  return 0;
}

}  // namespace streamsink::app
