// `streamsink import-hf`: a Hugging Face Llama folder → a streamsink checkpoint folder (infer/hf_import.h).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "infer/hf_import.h"

namespace streamsink::app {

int cmd_import_hf(int argc, char** argv) {
  CLI::App app{"Import a Hugging Face Llama model (config.json, safetensors, tokenizer.model) as a checkpoint",
               "streamsink import-hf"};
  std::string model, out;
  app.add_option("--model", model, "the Hugging Face model folder")->required();
  app.add_option("--out", out, "the checkpoint folder to write (must not exist, or be empty)")->required();
  CLI11_PARSE(app, argc, argv);

  const auto r = import_hf(model, out);
  const auto& c = r.config;
  std::printf("import-hf: %s -> %s\n", model.c_str(), r.out.c_str());
  std::printf("  vocab %lld, dim %lld, %lld layers, %lld heads (%lld kv), ffn %lld, context %lld, tied %s, sink %s\n",
              static_cast<long long>(c.vocab_size), static_cast<long long>(c.dim),
              static_cast<long long>(c.n_layers), static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.ffn_dim()),
              static_cast<long long>(c.context_length), c.tie_embeddings ? "yes" : "no", to_string(c.sink).c_str());
  std::printf("  %lld tensors, %lld parameters (float32)%s\n", static_cast<long long>(r.tensors),
              static_cast<long long>(r.parameters),
              r.dropped_lm_head ? "; lm_head.weight dropped (tie_word_embeddings)" : "");
  if (r.adds_bos)
    std::printf("  its tokenizer puts <s> before every text (add_bos_token): pass --bos to eval-stream, generate and "
                "chat so that streams start as the model was trained\n");
  return 0;
}

}  // namespace streamsink::app
