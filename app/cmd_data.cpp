// `streamsink data prepare|inspect`: text -> token shards, and a look inside shards.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "app/commands.h"
#include "common/error.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "infer/stream_eval.h"  // check_data_tokenizer

namespace streamsink::app {
namespace fs = std::filesystem;

namespace {

// Header line and the first `show` tokens of one shard (decoded when a tokenizer is given, once every id of the shard
// is known to be inside its vocabulary).
void show_shard(const std::string& path, const std::optional<Tokenizer>& tok, int64_t show) {
  const ShardHeader h = read_shard_header(path);
  if (tok) check_shard_vocab(Shard::open(path), tok->vocab_size(), tok->path());
  std::printf("%s: magic %d (%s), version %d, %lld tokens\n", path.c_str(), h.magic, dtype_name(h.dtype), h.version,
              static_cast<long long>(h.n_tokens));
  if (show <= 0 || h.n_tokens == 0) return;
  const Shard s = Shard::open(path);
  const int64_t n = std::min(show, s.size());
  std::vector<int32_t> ids;
  std::printf("  first %lld ids:", static_cast<long long>(n));
  for (int64_t i = 0; i < n; ++i) {
    ids.push_back(s.at(i));
    std::printf(" %d", ids.back());
  }
  std::printf("\n");
  if (tok) std::printf("  decoded: %s\n", tok->decode(ids).c_str());
}

int run_inspect(const std::vector<std::string>& targets, const std::string& tokenizer, int64_t show) {
  std::optional<Tokenizer> tok;
  if (!tokenizer.empty()) tok = Tokenizer::load(tokenizer);
  for (const auto& target : targets) {
    if (!fs::exists(target)) fail(target, "no such file or directory");
    if (!fs::is_directory(target)) {
      // a shard that a manifest.json beside it lists: the manifest's tokenizer must be this one, as for eval-stream
      if (tok) check_data_tokenizer(target, tokenizer);
      show_shard(target, tok, show);
      continue;
    }
    const Manifest m = read_manifest(target);
    if (tok) check_manifest_tokenizer(m, tokenizer);
    verify_data_dir(m);
    std::printf("%s: tokenizer %s (checksum %s, vocab %lld), %s tokens\n", m.path.c_str(), m.tokenizer_path.c_str(),
                m.tokenizer_checksum.c_str(), static_cast<long long>(m.vocab_size), m.dtype.c_str());
    for (int s = 0; s < 3; ++s)
      std::printf("  %-5s %8lld docs %12lld tokens %4zu shards\n", kSplitNames[s], static_cast<long long>(m.docs[s]),
                  static_cast<long long>(m.tokens[s]), m.shards[s].size());
    if (m.duplicate_docs >= 0)
      std::printf("  %lld duplicate docs skipped (exact copies of earlier ones)\n",
                  static_cast<long long>(m.duplicate_docs));
    else
      std::printf("  duplicate docs: not looked for (prepared before data prepare dropped exact copies)\n");
    for (int s = 0; s < 3; ++s)
      for (size_t i = 0; i < m.shards[s].size(); ++i)
        show_shard((fs::path(target) / m.shards[s][i]).string(), tok, i == 0 ? show : 0);
  }
  std::printf("ok\n");
  return 0;
}

}  // namespace

int cmd_data(int argc, char** argv) {
  CLI::App app{"Prepare token shards from text, and inspect them", "streamsink data"};
  app.require_subcommand(1);

  PrepareConfig pc;
  auto* prepare = app.add_subcommand("prepare", "tokenize text into train/val/test shards + manifest.json");
  prepare->add_option("--tokenizer", pc.tokenizer, "sentencepiece .model (from `streamsink tokenizer train`)")
      ->required();
  prepare->add_option("--input", pc.inputs, "text files or folders (recursive; plain or .gz)")->required();
  prepare->add_option("--out", pc.out, "output directory")->required();
  prepare->add_option("--val-fraction", pc.val_fraction, "share of documents for val")->capture_default_str();
  prepare->add_option("--test-fraction", pc.test_fraction, "share of documents for test")->capture_default_str();
  prepare->add_option("--shard-tokens", pc.shard_tokens, "tokens per shard")->capture_default_str();
  prepare->add_option("--threads", pc.num_threads, "threads (0 = all cores)")->capture_default_str();

  std::vector<std::string> targets;
  std::string tokenizer;
  int64_t show = 32;
  auto* inspect = app.add_subcommand("inspect", "validate shards; print headers, manifest figures, first tokens");
  inspect->add_option("targets", targets, "shard files or data directories")->required();
  inspect->add_option("--tokenizer", tokenizer,
                      "decode with this tokenizer: the manifest's (of a folder, or beside a shard); its vocabulary must "
                      "hold every id of the shards");
  inspect->add_option("--show", show, "tokens shown from the start of each split")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (prepare->parsed()) {
    prepare_data(pc);
    return 0;
  }
  return run_inspect(targets, tokenizer, show);
}

}  // namespace streamsink::app
