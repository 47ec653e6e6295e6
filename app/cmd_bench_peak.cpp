// `streamsink bench-peak`: measures this CPU's fp32 and bf16 matmul peaks (the MFU denominators on CPUs, one per
// training precision) and caches them; with --device cuda|all, also each GPU's achieved matmul rates, printed beside
// the data-sheet peaks that GPU MFU is taken against (not cached: a GPU's figure is for reading MFU, not for it).
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "common/device.h"
#include "common/error.h"
#include "train/peak_flops.h"

namespace streamsink::app {

int cmd_bench_peak(int argc, char** argv) {
  CLI::App app{"Measure the fp32 and bf16 matmul peaks of this CPU (cached for MFU), and list known GPU peaks in use",
               "streamsink bench-peak"};
  int threads = at::get_num_threads();
  bool force = true;
  std::string precision = "all", device = "cpu";
  int64_t gpu_n = 8192;
  app.add_option("--threads", threads, "intra-op threads")->check(CLI::PositiveNumber);
  app.add_option("--precision", precision, "fp32, bf16 or all")->check(CLI::IsMember({"fp32", "bf16", "all"}));
  app.add_option("--device", device,
                 "cpu (measured and cached), cuda (each GPU's achieved matmul rate beside its data-sheet peak, "
                 "measured every time) or all")
      ->check(CLI::IsMember({"cpu", "cuda", "all"}));
  app.add_option("--gpu-n", gpu_n, "matrix size of the GPU measurement (n x n x n)")->check(CLI::PositiveNumber);
  app.add_flag("!--cached", force, "print the cached figures instead of measuring again (a figure not cached yet is measured and "
                                  "cached; source= says which)");
  CLI11_PARSE(app, argc, argv);
  std::vector<std::string> precisions;
  for (const std::string prec : {"fp32", "bf16"})
    if (precision == "all" || precision == prec) precisions.push_back(prec);
  const auto gpus = cuda_device_names();
  if (device != "cpu" && gpus.empty()) throw Error("bench-peak --device " + device + ": CUDA is not usable in this process");
  if (device != "cuda")
    for (const auto& prec : precisions) {
      const auto p = cpu_peak(threads, prec, force);
      std::printf("cpu=\"%s\" threads=%d %s_matmul_gflops=%.1f source=%s\n", p.cpu.c_str(), p.threads, prec.c_str(),
                  p.flops / 1e9, p.cached ? "cache" : "measured");
    }
  for (size_t i = 0; i < gpus.size(); ++i) {
    if (device == "cpu") {
      std::printf("gpu=\"%s\" bf16_peak_tflops=%.0f fp32_peak_tflops=%.1f (data sheet)\n", gpus[i].c_str(),
                  gpu_peak_flops(gpus[i], "bf16") / 1e12, gpu_peak_flops(gpus[i], "fp32") / 1e12);
      continue;
    }
    for (const auto& prec : precisions) {
      const double measured = measure_matmul_flops(c10::Device(c10::kCUDA, static_cast<int8_t>(i)), prec, gpu_n, 1.0);
      const double sheet = gpu_peak_flops(gpus[i], prec);  // 0: not in the table
      char share[32] = "?";
      if (sheet > 0) std::snprintf(share, sizeof share, "%.3f", measured / sheet);
      std::printf("gpu=\"%s\" precision=%s matmul_tflops=%.1f data_sheet_tflops=%.1f of_data_sheet=%s n=%lld "
                  "source=measured\n",
                  gpus[i].c_str(), prec.c_str(), measured / 1e12, sheet / 1e12, share, static_cast<long long>(gpu_n));
    }
  }
  return 0;
}

}  // namespace streamsink::app
