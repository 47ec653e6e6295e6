// `streamsink bench-peak`: measures this CPU's fp32 and bf16 matmul peaks (the MFU denominators on CPUs, one per
// training precision) and caches them.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "common/device.h"
#include "train/peak_flops.h"

namespace streamsink::app {

int cmd_bench_peak(int argc, char** argv) {
  CLI::App app{"Measure the fp32 and bf16 matmul peaks of this CPU (cached for MFU), and list known GPU peaks in use",
               "streamsink bench-peak"};
  int threads = at::get_num_threads();
  bool force = true;
  std::string precision = "all";
  app.add_option("--threads", threads, "intra-op threads")->check(CLI::PositiveNumber);
  app.add_option("--precision", precision, "fp32, bf16 or all")->check(CLI::IsMember({"fp32", "bf16", "all"}));
  app.add_flag("!--cached", force, "print the cached figures instead of measuring again (a figure not cached yet is measured and "
                                  "cached; source= says which)");
  CLI11_PARSE(app, argc, argv);
  for (const std::string prec : {"fp32", "bf16"}) {
    if (precision != "all" && precision != prec) continue;
    const auto p = cpu_peak(threads, prec, force);
    std::printf("cpu=\"%s\" threads=%d %s_matmul_gflops=%.1f source=%s\n", p.cpu.c_str(), p.threads, prec.c_str(),
                p.flops / 1e9, p.cached ? "cache" : "measured");
  }
  for (const auto& d : cuda_device_names())
    std::printf("gpu=\"%s\" bf16_peak_tflops=%.0f fp32_peak_tflops=%.1f (data sheet)\n", d.c_str(),
                gpu_peak_flops(d, "bf16") / 1e12, gpu_peak_flops(d, "fp32") / 1e12);
  return 0;
}

}  // namespace streamsink::app
