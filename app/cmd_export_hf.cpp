// `streamsink export-hf`: a checkpoint → a Hugging Face LlamaForCausalLM folder (infer/hf_export.h).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "infer/hf_export.h"
#include "model/model_io.h"

namespace streamsink::app {

int cmd_export_hf(int argc, char** argv) {
  CLI::App app{"Export a checkpoint as a Hugging Face transformers LlamaForCausalLM folder (sink: none | token)",
               "streamsink export-hf"};
  std::string checkpoint, out;
  app.add_option("--checkpoint", checkpoint, "checkpoint folder, or a run folder (its latest checkpoint)")->required();
  app.add_option("--out", out, "the folder to write (must not exist, or be empty)")->required();
  CLI11_PARSE(app, argc, argv);

  const auto r = export_hf(checkpoint, out);
  const auto cfg = load_model_config(r.checkpoint);
  std::printf("export-hf: %s -> %s\n", r.checkpoint.c_str(), r.out.c_str());
  for (const auto& f : r.files) std::printf("  wrote %s\n", f.c_str());
  std::printf("  LlamaForCausalLM: vocab %lld, dim %lld, %lld layers, %lld heads (%lld kv), ffn %lld, sink %s\n",
              static_cast<long long>(cfg.vocab_size), static_cast<long long>(cfg.dim),
              static_cast<long long>(cfg.n_layers), static_cast<long long>(cfg.n_heads),
              static_cast<long long>(cfg.n_kv_heads), static_cast<long long>(cfg.ffn_dim()),
              to_string(cfg.sink).c_str());
  if (cfg.prefix_tokens() > 0)
    std::printf("  note: this model expects its %lld sink token(s) (ids %lld..%lld) before every input; "
                "transformers does not add them\n",
                static_cast<long long>(cfg.prefix_tokens()), static_cast<long long>(cfg.sink_token_id),
                static_cast<long long>(cfg.sink_token_id + cfg.prefix_tokens() - 1));
  return 0;
}

}  // namespace streamsink::app
