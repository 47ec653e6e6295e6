// `streamsink tokenizer train`: a sentencepiece tokenizer with the reserved ids and sink symbols of data/tokenizer.h.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/commands.h"
#include "data/tokenizer.h"

namespace streamsink::app {

int cmd_tokenizer(int argc, char** argv) {
  CLI::App app{"Train a sentencepiece tokenizer", "streamsink tokenizer"};
  app.require_subcommand(1);
  TokenizerTrainConfig cfg;
  auto* train = app.add_subcommand("train", "train a tokenizer (byte fallback, <sink> symbols at ids 4..) on text");
  train->add_option("--input", cfg.inputs, "text files or folders (recursive; plain or .gz)")->required();
  train->add_option("--vocab-size", cfg.vocab_size, "vocabulary size, reserved ids and 256 byte pieces included")
      ->required();
  train->add_option("--model-type", cfg.model_type, "bpe or unigram")
      ->check(CLI::IsMember({"bpe", "unigram"}))
      ->capture_default_str();
  train->add_option("--threads", cfg.num_threads, "threads (0 = all cores)")->capture_default_str();
  train->add_option("--max-sentences", cfg.max_sentences, "lines sampled for training")->capture_default_str();
  train->add_option("--sink-symbols", cfg.n_sink_symbols, "reserved sink symbols <sink>, <sink1>, ...")
      ->capture_default_str();
  train->add_option("--out", cfg.out, "the .model file to write")->required();
  train->add_option("--progress-every", cfg.progress_seconds, "seconds between progress lines while training (0 = none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  CLI11_PARSE(app, argc, argv);

  train_tokenizer(cfg);
  const Tokenizer tok = Tokenizer::load(cfg.out);
  std::printf("wrote %s: vocab %lld, unk %d bos %d eos %d pad %d, %lld sink ids from %d, checksum %s\n",
              cfg.out.c_str(), static_cast<long long>(tok.vocab_size()), tok.unk_id(), tok.bos_id(), tok.eos_id(),
              tok.pad_id(), static_cast<long long>(tok.n_sink_ids()), tok.n_sink_ids() ? tok.sink_id(0) : -1,
              tok.checksum().c_str());
  return 0;
}

}  // namespace streamsink::app
