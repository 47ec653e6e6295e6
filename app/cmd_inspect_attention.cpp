// `streamsink inspect-attention`: how much attention each layer and head puts on the first token(s), and average
// attention maps per layer as PNG heatmaps (StreamingLLM §3.1, Figure 2).
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "app/commands.h"
#include "common/device.h"
#include "common/error.h"
#include "common/file_util.h"
#include "infer/attention_stats.h"
#include "infer/png.h"
#include "infer/stream_eval.h"
#include "model/model_io.h"

namespace streamsink::app {

int cmd_inspect_attention(int argc, char** argv) {
  CLI::App app{"Attention on the first tokens per layer and head, and average attention maps (Figure 2)",
               "streamsink inspect-attention"};
  std::string checkpoint, data, out, tokenizer, device = "auto";
  int64_t tokens = 64, samples = 16, first_k = 0;
  bool linear = false;
  int threads = 0;
  app.add_option("--checkpoint", checkpoint, "checkpoint folder, or a run folder (its latest checkpoint)")->required();
  app.add_option("--data", data, "a token shard, a data folder (its test split) or a text file")->required();
  app.add_option("--out", out,
                 "output folder: attention.json (the shares, and the mean maps that scripts/plots/plot_attention.py "
                 "draws) and layer_<l>.png")
      ->required();
  app.add_option("--tokens", tokens, "T tokens per window (the sink prefix included)")->capture_default_str();
  app.add_option("--samples", samples,
                 "N windows, spread evenly over the data's first 4·N·T tokens (only those are read)")
      ->capture_default_str();
  app.add_option("--first-k", first_k,
                 "report the share on the first k tokens (default: the sink tokens, or 4; at most T - 1)");
  app.add_flag("--linear", linear, "linear colour scale (default: log)");
  app.add_option("--tokenizer", tokenizer, "sentencepiece model for a text --data (default: CHECKPOINT/tokenizer.model)");
  app.add_option("--threads", threads, "intra-op CPU threads")->check(CLI::Range(0, 4096));
  app.add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(threads);

  const std::string dir = resolve_checkpoint_dir(checkpoint);
  check_data_tokenizer(data, dir + "/tokenizer.model");  // shards made with another tokenizer would read as noise
  auto model = load_model(dir, resolve_device(device));
  const auto& cfg = model->config();
  // The default never exceeds T - 1 (a short --tokens is no reason to blame a --first-k the user did not give).
  if (first_k <= 0)
    first_k = std::min<int64_t>(cfg.prefix_tokens() > 0 ? cfg.prefix_tokens() : 4, std::max<int64_t>(1, tokens - 1));
  if (tokenizer.empty()) tokenizer = dir + "/tokenizer.model";
  const int64_t need = samples * tokens;  // enough for evenly spread windows; more is not read
  const auto stream = load_eval_tokens(data, tokenizer, std::max<int64_t>(need, tokens) * 4, cfg.vocab_size);
  const auto s = collect_attention(model, stream, tokens, samples, first_k);

  std::filesystem::create_directories(out);
  write_file_atomic(out + "/attention.json", attention_stats_json(s, to_string(cfg.sink)));
  HeatmapOptions hm;
  hm.log_scale = !linear;
  hm.cell_px = static_cast<int>(std::max<int64_t>(1, 512 / tokens));
  std::printf("inspect-attention: %s, sink %s, %lld windows of %lld tokens\n", dir.c_str(), to_string(cfg.sink).c_str(),
              static_cast<long long>(samples), static_cast<long long>(tokens));
  std::printf("  uniform share on token 0: %.4f\n", s.uniform_first_token_share);
  std::printf("  layer  first-token  first-%lld  sink-column\n", static_cast<long long>(first_k));
  for (int64_t l = 0; l < s.layers; ++l) {
    write_heatmap_png(out + "/layer_" + std::to_string(l) + ".png", s.mean_maps.select(0, l), hm);
    std::printf("  %5lld  %11.4f  %8.4f  %11.4f\n", static_cast<long long>(l),
                s.first_token_share.select(0, l).mean().item<double>(),
                s.first_k_share.select(0, l).mean().item<double>(), s.sink_column_mass.select(0, l).mean().item<double>());
  }
  std::printf("wrote %s/attention.json and %lld heatmaps\n", out.c_str(), static_cast<long long>(s.layers));
  return 0;
}

}  // namespace streamsink::app
