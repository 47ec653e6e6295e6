// A small prepared corpus for the trainer and decoder tests: synthetic text with real structure (a fixed grammar
// over a seeded random lexicon, so a model can learn it), a 512-token tokenizer and shards, made once through
// the real executable and shared by every suite of a build (made under a temporary name, renamed when complete,
// so suites running in parallel never see half of it).
#pragma once
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/helpers.h"

namespace streamsink::testing {

inline void write_synthetic_corpus(const std::filesystem::path& dir, int n_docs, int sentences_per_doc) {
  std::filesystem::create_directories(dir);
  std::mt19937_64 rng(20240520);
  const std::vector<std::string> subjects = {"the kernel", "a driver", "the scheduler", "this module", "the cache",
                                             "each process", "the allocator", "a device", "the filesystem"};
  const std::vector<std::string> verbs = {"allocates", "frees", "reads", "writes", "locks", "maps", "flushes",
                                          "schedules", "probes", "registers"};
  const std::vector<std::string> objects = {"a page", "the buffer", "every inode", "the queue", "one interrupt",
                                            "the request", "a timer", "the superblock", "its memory"};
  const std::vector<std::string> tails = {"before it returns", "under the lock", "when the counter drops to zero",
                                          "at boot", "on every tick", "if the flag is set", "for each CPU"};
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  for (int d = 0; d < n_docs; ++d) {
    std::ofstream f(dir / ("doc" + std::to_string(d) + ".txt"));
    f << "Section " << d << "\n\n";
    for (int s = 0; s < sentences_per_doc; ++s) {
      f << pick(subjects) << " " << pick(verbs) << " " << pick(objects) << " " << pick(tails) << ".";
      f << ((s % 5 == 4) ? "\n\n" : " ");
    }
  }
}

// The prepared data folder (tokenizer.model inside), made on first use.
inline std::string prepared_corpus() {
  namespace fs = std::filesystem;
  const fs::path root = fs::current_path() / "corpus-fixture-v1";
  if (fs::exists(root / "data" / "manifest.json")) return (root / "data").string();
  const fs::path tmp = fs::current_path() / ("corpus-fixture-tmp-" + std::to_string(getpid()));
  fs::remove_all(tmp);
  write_synthetic_corpus(tmp / "text", 120, 60);
  const std::string tok = (tmp / "tokenizer.model").string();
  auto r = run_streamsink("tokenizer train --input " + (tmp / "text").string() + " --vocab-size 512 --out " + tok);
  if (r.exit_code != 0) throw std::runtime_error("tokenizer train failed:\n" + r.output);
  r = run_streamsink("data prepare --tokenizer " + tok + " --input " + (tmp / "text").string() + " --out " +
                     (tmp / "data").string() + " --val-fraction 0.1 --test-fraction 0.1");
  if (r.exit_code != 0) throw std::runtime_error("data prepare failed:\n" + r.output);
  std::error_code ec;
  fs::rename(tmp, root, ec);  // loses the race harmlessly when another suite made it first
  if (ec) fs::remove_all(tmp);
  return (root / "data").string();
}

// step -> the training record of that step in RUN/metrics.jsonl (lines with "loss" and no "event").
inline std::map<int64_t, nlohmann::json> training_records(const std::string& run) {
  std::map<int64_t, nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss") && !j.contains("event")) out[j["step"].get<int64_t>()] = j;
  }
  return out;
}



// The record of the last evaluation in RUN/metrics.jsonl (val_loss and the sink metrics); empty when there was none.
inline nlohmann::json last_eval_record(const std::string& run) {
  nlohmann::json rec;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (auto j = nlohmann::json::parse(line); j.contains("val_loss")) rec = j;
  return rec;
}

// The validation loss of the last evaluation in RUN/metrics.jsonl; -1 when there was none.
inline double last_val_loss(const std::string& run) {
  const auto rec = last_eval_record(run);
  return rec.contains("val_loss") ? rec["val_loss"].get<double>() : -1;
}

// configs/tiny.yaml pointed at the fixture corpus, with extra --set flags.
inline std::string tiny_train_args(const std::string& out, const std::string& extra = "") {
  return "train " + source_dir() + "/configs/tiny.yaml --set train.data_dir=" + prepared_corpus() +
         " --set model.vocab_size=512 --out " + out + " " + extra;
}

}  // namespace streamsink::testing
