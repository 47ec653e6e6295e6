// streamsink: one executable, git-style subcommands (`streamsink <command> --help`).
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "app/commands.h"
#include "common/device.h"
#include "common/error.h"

namespace {

using streamsink::app::Command;

const Command kCommands[] = {
    {"version", "print the version, the LibTorch version and the devices it sees", streamsink::app::cmd_version},
    {"launch", "start N local ranks of a command (data parallel), as torchrun does", streamsink::app::cmd_launch},
    {"tokenizer", "train a sentencepiece tokenizer with sink symbols (tokenizer train)", streamsink::app::cmd_tokenizer},
    {"data", "text -> token shards, and a look inside them (data prepare | inspect)", streamsink::app::cmd_data},
    {"train", "pretrain a model from a run config (one process, or N data-parallel ranks)", streamsink::app::cmd_train},
    {"bench-peak", "measure this CPU's fp32 and bf16 matmul peaks (the MFU denominators)", streamsink::app::cmd_bench_peak},
    {"eval-stream", "per-token NLL of a long stream under a KV cache policy (dense|window|recompute|streaming)",
     streamsink::app::cmd_eval_stream},
    {"generate", "stream text from a prompt through a sink + window cache, in constant memory",
     streamsink::app::cmd_generate},
    {"chat", "multi-round prompts on stdin, one streaming cache across rounds", streamsink::app::cmd_chat},
    {"inspect-attention", "attention on the first tokens per layer and head, and heatmaps (Figure 2)",
     streamsink::app::cmd_inspect_attention},
    {"export-hf", "checkpoint -> Hugging Face LlamaForCausalLM folder (config.json, safetensors, tokenizer)",
     streamsink::app::cmd_export_hf},
    {"import-hf", "Hugging Face Llama folder -> checkpoint (eval-stream / generate / chat accept it)",
     streamsink::app::cmd_import_hf},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: streamsink <command> [options]   (streamsink <command> --help for its options)\n\n");
  std::fprintf(out, "commands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-18s %s\n", c.name, c.summary);
  std::fprintf(out, "\noptions:\n  --help             this list\n  --version          same as `streamsink version`\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered stdout even into a pipe (under `streamsink launch`, tee, CI): progress shows as it happens.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  streamsink::apply_sdpa_env();
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version") name = "version";
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      const int rc = c.run(argc - 1, argv + 1);
      // CLI11 reports a bad flag with codes 100..127; a usage error is 2, as everywhere else here.
      return (rc >= 100 && rc < 128) ? 2 : rc;
    } catch (const streamsink::Error& e) {
      std::fprintf(stderr, "streamsink %s: error: %s\n", c.name, e.what());
    } catch (const c10::Error& e) {
      std::fprintf(stderr, "streamsink %s: error: %s\n", c.name, e.what_without_backtrace());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "streamsink %s: error: %s\n", c.name, e.what());
    }
    return 1;
  }
  std::fprintf(stderr, "streamsink: unknown command '%s'\n\n", name.c_str());
  print_usage(stderr);
  return 2;
}
