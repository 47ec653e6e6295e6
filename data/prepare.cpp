#include "data/prepare.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <nlohmann/json.hpp>
#include <regex>
#include <system_error>
#include <thread>

#include "common/error.h"
#include "common/file_util.h"
#include "data/corpus.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace streamsink {
namespace fs = std::filesystem;

double split_point(const std::string& relpath) {
  // FNV-1a alone mixes the last bytes poorly (paths differing in one trailing digit land close together);
  // a splitmix64 finalizer spreads them over [0, 1).
  uint64_t z = fnv1a64(relpath.data(), relpath.size());
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

int split_by_hash(const std::string& relpath, double val_fraction, double test_fraction) {
  const double u = split_point(relpath);
  if (u < val_fraction) return 1;
  if (u < val_fraction + test_fraction) return 2;
  return 0;
}

namespace {

// Runs f(i) for i in [0, n) on `threads` threads; rethrows the first exception after all have stopped.
template <class F>
void parallel_for(int64_t n, int threads, F&& f) {
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu);
        if (!error) error = std::current_exception();
        next = n;  // stop handing out work
      }
    }
  };
  const int k = static_cast<int>(std::min<int64_t>(threads, n));
  std::vector<std::thread> pool;
  try {
    for (int t = 1; t < k; ++t) pool.emplace_back(work);
  } catch (const std::system_error& e) {  // no more threads: the ones started stop, then the error is ours
    next = n;
    for (auto& t : pool) t.join();
    throw Error("data prepare: cannot start thread " + std::to_string(pool.size() + 1) + " of " + std::to_string(k) +
                " (" + e.what() + "): pass fewer --threads");
  }
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// Cuts a split's token stream into shards of `shard_tokens`.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, int64_t shard_tokens, TokenDtype dtype)
      : dir_(std::move(dir)), split_(std::move(split)), shard_tokens_(shard_tokens), dtype_(dtype) {}
  void append(const std::vector<int32_t>& ids) {
    size_t i = 0;
    while (i < ids.size()) {
      const size_t take = std::min(ids.size() - i, static_cast<size_t>(shard_tokens_) - buf_.size());
      buf_.insert(buf_.end(), ids.begin() + static_cast<std::ptrdiff_t>(i),
                  ids.begin() + static_cast<std::ptrdiff_t>(i + take));
      i += take;
      if (static_cast<int64_t>(buf_.size()) == shard_tokens_) flush();
    }
  }
  void finish() {
    if (!buf_.empty()) flush();
  }
  const std::vector<std::pair<std::string, int64_t>>& shards() const { return shards_; }

 private:
  void flush() {
    if (static_cast<int64_t>(shards_.size()) > kMaxShardIndex)  // the readers match six digits: a seventh would be a shard nobody reads
      fail(dir_, "the " + split_ + " split needs more than " + std::to_string(kMaxShardIndex + 1) + " shards of " +
                     std::to_string(shard_tokens_) + " tokens: pass a larger --shard-tokens");
    const std::string path = shard_path(dir_, split_, static_cast<int64_t>(shards_.size()));
    write_shard(path, buf_, dtype_);
    shards_.emplace_back(fs::path(path).filename().string(), static_cast<int64_t>(buf_.size()));
    buf_.clear();
  }
  std::string dir_, split_;
  int64_t shard_tokens_;
  TokenDtype dtype_;
  std::vector<int32_t> buf_;
  std::vector<std::pair<std::string, int64_t>> shards_;
};

// A \r-updated progress line on stderr, at most 5 times a second.
class Progress {
 public:
  explicit Progress(int64_t total_bytes) : total_(std::max<int64_t>(1, total_bytes)), t0_(clock::now()) {}
  void update(const char* split, int64_t done_bytes, int64_t tokens, bool force = false) {
    const auto now = clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double frac = std::min(1.0, static_cast<double>(done_bytes) / static_cast<double>(total_));
    const int width = 30, filled = static_cast<int>(frac * width);
    const double secs = std::max(1e-9, std::chrono::duration<double>(now - t0_).count());
    std::fprintf(stderr, "\rprepare %-5s [%s%s] %5.1f%%  %lld tokens  %.0fk tokens/s   ", split,
                 std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), 100.0 * frac,
                 static_cast<long long>(tokens), static_cast<double>(tokens) / secs / 1e3);
    std::fflush(stderr);
  }

 private:
  using clock = std::chrono::steady_clock;
  int64_t total_;
  clock::time_point t0_, last_{};
};

// Moves one document into each empty split when there are at least 3, so val and test are never empty on a
// small corpus: the document taken is the one, among splits that can spare one, whose hash point lies nearest
// the empty split's interval of [0, 1). It is the same document on every run, and adding files changes the
// choice only while the split would otherwise stay empty. A split asked for with fraction 0 stays empty.
void fill_empty_splits(const std::vector<double>& points, std::vector<int>& split, double vf, double tf) {
  if (split.size() < 3) return;
  const double lo[3] = {vf + tf, 0.0, vf}, hi[3] = {1.0, vf, vf + tf};
  for (int s : {1, 2, 0}) {
    int64_t count[3] = {0, 0, 0};
    for (int x : split) ++count[x];
    if (count[s] > 0 || hi[s] <= lo[s]) continue;
    size_t best = split.size();
    double best_d = 2.0;
    for (size_t i = 0; i < split.size(); ++i) {
      if (count[split[i]] < 2) continue;
      const double u = points[i];
      const double d = u < lo[s] ? lo[s] - u : u >= hi[s] ? u - hi[s] : 0.0;
      if (d < best_d) best_d = d, best = i;
    }
    if (best < split.size()) split[best] = s;
  }
}

// Marks each document whose text (decompressed, as it would be encoded) equals that of an earlier one in `docs`.
// Candidates share the text's length and its 64-bit FNV-1a (the hash the project already uses; each text is read
// and hashed on the pool and let go, so a 16-byte key per document is held, never the texts): a false candidate
// among n documents is as rare as ~n^2 / 2^65, and every candidate is settled by reading the texts again and
// comparing their bytes, so a collision costs a re-read and can never drop a document. Empty documents are never
// marked: each stays a lone <eos>, as before copies were dropped. Which copy stays depends on the order of `docs`
// alone, not the threads.
std::vector<char> mark_duplicates(const std::vector<Document>& docs, int threads) {
  const size_t n = docs.size();
  std::vector<std::pair<uint64_t, uint64_t>> key(n);  // (length, hash)
  parallel_for(static_cast<int64_t>(n), threads, [&](int64_t i) {
    std::string text;
    read_document(docs[i].path, &text);
    key[i] = {text.size(), fnv1a64(text.data(), text.size())};
  });
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  // Groups of equal keys, each in document order (stable), so the first of a text is the one that stays.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] < key[b]; });
  std::vector<char> duplicate(n, 0);
  for (size_t a = 0, b; a < n; a = b) {
    b = a + 1;
    while (b < n && key[order[b]] == key[order[a]]) ++b;
    if (b - a == 1 || key[order[a]].first == 0) continue;
    std::vector<std::string> kept;  // the group's distinct texts: one, bar a hash collision
    for (size_t k = a; k < b; ++k) {
      std::string text;
      read_document(docs[order[k]].path, &text);
      if (std::find(kept.begin(), kept.end(), text) != kept.end())
        duplicate[order[k]] = 1;
      else
        kept.push_back(std::move(text));
    }
  }
  return duplicate;
}

// The documents that are this command's own output: files `data prepare` writes into `out` (the manifest, the
// marker, the shards, the tokenizer's copy, an atomic write's temporary), when `out` lies inside an input folder
// (a rerun would read the last run's manifest as text, then remove it). Only those, and only in `out` itself: an
// input inside `out` (--input data/raw --out data) stays an input. Says how many it leaves out.
std::vector<Document> without_own_output(std::vector<Document> docs, const std::string& out) {
  std::error_code ec;
  fs::path out_dir = fs::weakly_canonical(fs::absolute(out), ec);
  if (ec) return docs;
  if (!out_dir.has_filename()) out_dir = out_dir.parent_path();  // "dir/" names dir
  // kPrepareIncomplete is "prepare.incomplete"; AtomicFile's temporaries add ".tmp.PID"
  static const std::regex own(
      R"((manifest\.json|tokenizer\.model|prepare\.incomplete|(train|val|test)_[0-9]{6}\.bin)(\.tmp\.[0-9]+)?)");
  const auto is_own = [&](const Document& d) {
    const fs::path p = fs::weakly_canonical(fs::absolute(d.path), ec);
    return !ec && p.parent_path() == out_dir && std::regex_match(p.filename().string(), own);
  };
  const size_t before = docs.size();
  docs.erase(std::remove_if(docs.begin(), docs.end(), is_own), docs.end());
  if (docs.size() < before)
    std::fprintf(stderr, "prepare: %zu files in the output folder %s are its own output, not documents\n",
                 before - docs.size(), out.c_str());
  return docs;
}

}  // namespace

PrepareStats prepare_data(const PrepareConfig& cfg) {
  const auto t0 = std::chrono::steady_clock::now();
  if (cfg.out.empty()) throw Error("data prepare: no output directory (--out)");
  if (cfg.inputs.empty()) throw Error("data prepare: no input (--input)");
  if (!(cfg.val_fraction >= 0 && cfg.test_fraction >= 0 && cfg.val_fraction + cfg.test_fraction < 1))
    fail(cfg.out, "val and test fractions must be >= 0 and sum to less than 1");
  if (cfg.shard_tokens <= 0 || cfg.shard_tokens > INT32_MAX)
    fail(cfg.out, "shard_tokens must be in [1, 2^31-1] (llm.c stores the count in an int32)");
  if (cfg.chunk_bytes <= 0) fail(cfg.out, "chunk_bytes must be positive");

  const Tokenizer tok = Tokenizer::load(cfg.tokenizer);
  if (tok.eos_id() < 0)
    fail(cfg.tokenizer, "has no </s> control piece: data prepare ends every document with it (train the tokenizer "
                        "with `streamsink tokenizer train`, or pass one with an eos id)");
  // Big documents are encoded in pieces cut after a newline only where that gives the ids of the whole.
  const bool cut_documents = tok.newline_cuts_are_exact();
  if (!cut_documents)
    std::fprintf(stderr, "prepare: %s encodes a text cut after its newlines differently from the whole (a dummy "
                 "prefix?): documents are encoded whole, on one thread each\n", cfg.tokenizer.c_str());
  const TokenDtype dtype = dtype_for_vocab(tok.vocab_size());
  check_vocab_fits(tok.vocab_size(), dtype, cfg.tokenizer);
  const int threads = cfg.num_threads > 0 ? cfg.num_threads
                                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  const std::vector<Document> found = without_own_output(find_documents(cfg.inputs), cfg.out);
  if (found.empty()) throw Error("data prepare: no files under the inputs");
  // Binary files leave before the split (their first 8000 bytes decide, as when they are read), so that one can
  // never take val's or test's only place.
  std::vector<char> text_file(found.size());
  parallel_for(static_cast<int64_t>(found.size()), threads,
               [&](int64_t i) { text_file[i] = document_is_text(found[i].path); });
  std::vector<Document> docs;
  for (size_t i = 0; i < found.size(); ++i)
    if (text_file[i]) docs.push_back(found[i]);
  const int64_t skipped_binary = static_cast<int64_t>(found.size() - docs.size());
  if (docs.empty())
    throw Error("data prepare: none of the " + std::to_string(found.size()) + " files under the inputs is text");

  std::error_code ec;
  fs::create_directories(cfg.out, ec);
  if (ec || !fs::is_directory(cfg.out)) fail(cfg.out, "cannot create the output directory");
  // A directory with a manifest is complete: an earlier run's manifest goes first, so a rerun cut short (or failing)
  // leaves none to vouch for a mix of old and new shards.
  fs::remove(fs::path(cfg.out) / "manifest.json", ec);
  // ...and the readers refuse the folder while this marker is there (list_shards), so a rerun that fails part-way
  // cannot leave a mix of old and new shards that trains or evaluates without a word.
  write_file_atomic((fs::path(cfg.out) / kPrepareIncomplete).string(),
                    "streamsink data prepare is writing this folder, or stopped before it finished: run it again\n");

  // Exact copies (one text in two folders, or plain and gzipped) leave before the split too, the first staying: split
  // by their own paths they would put one text in train and in test. They are read after the marker is down, so an
  // input that cannot be read (a truncated .gz) fails the run with the folder marked, as it would while encoding.
  const std::vector<char> duplicate = mark_duplicates(docs, threads);
  std::vector<Document> unique;
  for (size_t i = 0; i < docs.size(); ++i)
    if (!duplicate[i]) unique.push_back(std::move(docs[i]));
  const int64_t duplicates = static_cast<int64_t>(docs.size() - unique.size());
  docs = std::move(unique);
  std::vector<double> points(docs.size());
  std::vector<int> split(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    points[i] = split_point(docs[i].relpath);
    split[i] = split_by_hash(docs[i].relpath, cfg.val_fraction, cfg.test_fraction);
  }
  fill_empty_splits(points, split, cfg.val_fraction, cfg.test_fraction);

  int64_t total_bytes = 0;
  std::vector<int64_t> disk_size(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    disk_size[i] = static_cast<int64_t>(fs::file_size(docs[i].path, ec));
    if (ec) disk_size[i] = 0;
    total_bytes += disk_size[i];
  }
  std::fprintf(stderr, "prepare: %zu files, tokenizer %s (vocab %lld, %s shards), %d threads\n", docs.size(),
               cfg.tokenizer.c_str(), static_cast<long long>(tok.vocab_size()), dtype_name(dtype), threads);

  PrepareStats stats{{0, 0, 0}, {0, 0, 0}, duplicates, 0.0};
  int64_t skipped = skipped_binary, done_bytes = 0, all_tokens = 0;
  Progress progress(total_bytes);
  nlohmann::ordered_json splits_json = nlohmann::ordered_json::object();
  const int32_t eos = tok.eos_id();

  for (int s = 0; s < 3; ++s) {
    std::vector<size_t> members;
    for (size_t i = 0; i < docs.size(); ++i)
      if (split[i] == s) members.push_back(i);
    ShardWriter writer(cfg.out, kSplitNames[s], cfg.shard_tokens, dtype);

    // Batches of documents, ~32 MB on disk: read in parallel, cut into chunks, encode the chunks in parallel,
    // then append in document order, so the output never depends on the thread count.
    for (size_t b = 0; b < members.size();) {
      size_t e = b;
      int64_t batch_bytes = 0;
      while (e < members.size() && (e == b || (batch_bytes < (32 << 20) && e - b < 8192)))
        batch_bytes += disk_size[members[e++]];
      const size_t n = e - b;
      std::vector<std::string> text(n);
      std::vector<char> is_text(n);
      parallel_for(static_cast<int64_t>(n), threads,
                   [&](int64_t i) { is_text[i] = read_document(docs[members[b + i]].path, &text[i]); });

      struct Chunk {
        size_t doc, begin, end;
      };
      std::vector<Chunk> chunks;
      for (size_t i = 0; i < n; ++i) {
        const std::string& t = text[i];
        for (size_t p = 0; p < t.size();) {
          const size_t q = cut_documents ? newline_piece_end(t, p, static_cast<size_t>(cfg.chunk_bytes)) : t.size();
          chunks.push_back({i, p, q});
          p = q;
        }
      }
      std::vector<std::vector<int32_t>> ids(chunks.size());
      parallel_for(static_cast<int64_t>(chunks.size()), threads, [&](int64_t c) {
        const Chunk& ch = chunks[c];
        ids[c] = tok.encode(text[ch.doc].substr(ch.begin, ch.end - ch.begin));
      });

      size_t c = 0;
      for (size_t i = 0; i < n; ++i) {
        if (!is_text[i]) {
          ++skipped;
          continue;
        }
        for (; c < chunks.size() && chunks[c].doc == i; ++c) {
          writer.append(ids[c]);
          stats.tokens[s] += static_cast<int64_t>(ids[c].size());
        }
        writer.append({eos});
        stats.tokens[s] += 1;
        stats.docs[s] += 1;
      }
      b = e;
      done_bytes += batch_bytes;
      progress.update(kSplitNames[s], done_bytes, all_tokens + stats.tokens[s]);
    }
    writer.finish();
    all_tokens += stats.tokens[s];

    // A previous run with smaller shards may have left higher-numbered shards: they are not this data.
    const std::regex name_re(std::string(kSplitNames[s]) + "_([0-9]{6})\\.bin");
    for (const auto& entry : fs::directory_iterator(cfg.out)) {
      std::smatch m;
      const std::string name = entry.path().filename().string();
      if (std::regex_match(name, m, name_re) &&
          std::stoll(m[1].str()) >= static_cast<long long>(writer.shards().size()) && !fs::remove(entry.path(), ec))
        fail(entry.path().string(), "an earlier run's shard, not this data, and it cannot be removed (" +
                                        ec.message() + "): the readers would read it; remove it by hand");
    }

    nlohmann::ordered_json shard_list = nlohmann::ordered_json::array();
    for (const auto& [file, count] : writer.shards()) shard_list.push_back({{"file", file}, {"tokens", count}});
    splits_json[kSplitNames[s]] = {{"docs", stats.docs[s]}, {"tokens", stats.tokens[s]}, {"shards", shard_list}};
  }
  progress.update("done", total_bytes, all_tokens, true);
  std::fprintf(stderr, "\n");

  nlohmann::ordered_json inputs = nlohmann::ordered_json::array();
  for (const auto& in : cfg.inputs) inputs.push_back(fs::absolute(in).lexically_normal().string());
  nlohmann::ordered_json manifest = {
      {"format", "streamsink-shards"},
      {"version", 1},
      {"tokenizer",
       {{"path", fs::absolute(cfg.tokenizer).lexically_normal().string()},
        {"checksum", tok.checksum()},
        {"vocab_size", tok.vocab_size()},
        {"eos_id", eos}}},
      {"dtype", dtype_name(dtype)},
      {"shard_tokens", cfg.shard_tokens},
      {"val_fraction", cfg.val_fraction},
      {"test_fraction", cfg.test_fraction},
      {"inputs", inputs},
      {"skipped_binary_files", skipped},
      {"duplicate_docs", duplicates},
      {"splits", splits_json},
  };
  // The tokenizer travels with its data (train copies it into every checkpoint, for generate, chat and export-hf).
  const fs::path tok_copy = fs::path(cfg.out) / "tokenizer.model";
  if (!fs::exists(tok_copy) || !fs::equivalent(tok_copy, cfg.tokenizer))
    write_file_atomic(tok_copy.string(), read_file(cfg.tokenizer));
  // Written last: a directory with a manifest is complete.
  write_file_atomic((fs::path(cfg.out) / "manifest.json").string(), manifest.dump(2) + "\n");
  fs::remove(fs::path(cfg.out) / kPrepareIncomplete, ec);

  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr,
               "prepare: train %lld docs %lld tokens | val %lld docs %lld tokens | test %lld docs %lld tokens | "
               "%lld binary files skipped | %lld duplicate docs skipped\n",
               static_cast<long long>(stats.docs[0]), static_cast<long long>(stats.tokens[0]),
               static_cast<long long>(stats.docs[1]), static_cast<long long>(stats.tokens[1]),
               static_cast<long long>(stats.docs[2]), static_cast<long long>(stats.tokens[2]),
               static_cast<long long>(skipped), static_cast<long long>(duplicates));
  for (int s = 1; s < 3; ++s)
    if (stats.docs[s] == 0)
      std::fprintf(stderr, "prepare: note: the %s split is empty (%s); train needs a val split, eval-stream's default "
                   "stream is the test split\n", kSplitNames[s],
                   (s == 1 ? cfg.val_fraction : cfg.test_fraction) <= 0 ? "its fraction is 0" : "too few documents");
  std::fprintf(stderr, "prepare: %lld tokens in %.2f s = %.0f tokens/s -> %s\n", static_cast<long long>(all_tokens),
               stats.seconds, static_cast<double>(all_tokens) / std::max(1e-9, stats.seconds), cfg.out.c_str());
  return stats;
}

Manifest read_manifest(const std::string& data_dir) {
  Manifest m;
  m.path = (fs::path(data_dir) / "manifest.json").string();
  std::ifstream f(m.path);
  if (!f) fail(m.path, fs::exists(m.path) ? "cannot open for reading" : "no such file (run `streamsink data prepare`)");
  try {
    const auto j = nlohmann::json::parse(f);
    if (j.value("format", "") != "streamsink-shards") fail(m.path, "not a streamsink shard manifest");
    const auto& t = j.at("tokenizer");
    m.tokenizer_path = t.at("path").get<std::string>();
    m.tokenizer_checksum = t.at("checksum").get<std::string>();
    m.vocab_size = t.at("vocab_size").get<int64_t>();
    m.dtype = j.at("dtype").get<std::string>();
    m.duplicate_docs = j.value("duplicate_docs", int64_t{-1});  // absent before prepare looked for copies
    for (int s = 0; s < 3; ++s) {
      const auto& sp = j.at("splits").at(kSplitNames[s]);
      m.docs[s] = sp.at("docs").get<int64_t>();
      m.tokens[s] = sp.at("tokens").get<int64_t>();
      for (const auto& sh : sp.at("shards")) {
        m.shards[s].push_back(sh.at("file").get<std::string>());
        m.shard_tokens[s].push_back(sh.at("tokens").get<int64_t>());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail(m.path, std::string("malformed manifest: ") + e.what());
  }
  return m;
}

void check_manifest_tokenizer(const Manifest& m, const std::string& tokenizer_path) {
  const Tokenizer tok = Tokenizer::load(tokenizer_path);
  if (tok.checksum() == m.tokenizer_checksum) return;
  // Other bytes can still be the same pieces (a model re-serialized, a field added): compare the id -> piece tables
  // with the data's own tokenizer, where a copy of it is at hand (prepare puts one beside the manifest).
  for (const std::string& candidate : {(fs::path(m.path).parent_path() / "tokenizer.model").string(), m.tokenizer_path}) {
    if (!fs::is_regular_file(candidate)) continue;
    try {
      const Tokenizer data_tok = Tokenizer::load(candidate);
      if (data_tok.checksum() != m.tokenizer_checksum) continue;
      bool same = data_tok.vocab_size() == tok.vocab_size();
      for (int32_t id = 0; same && id < tok.vocab_size(); ++id) same = data_tok.piece(id) == tok.piece(id);
      if (same) return;
      break;
    } catch (const Error&) {  // a copy that does not load vouches for nothing
    }
  }
  fail(m.path, "prepared with tokenizer " + m.tokenizer_path + " (checksum " + m.tokenizer_checksum + ", vocabulary " +
                   std::to_string(m.vocab_size) + "), but " + tokenizer_path + " is a different one (checksum " +
                   tok.checksum() + ", vocabulary " + std::to_string(tok.vocab_size()) +
                   "): a model would read the data's token ids as other pieces. Re-run `streamsink data prepare "
                   "--tokenizer " + tokenizer_path + " ...`, or pass the tokenizer the data was made with");
}

void verify_data_dir(const Manifest& m) {
  const fs::path dir = fs::path(m.path).parent_path();
  for (int s = 0; s < 3; ++s) {
    int64_t sum = 0;
    for (size_t i = 0; i < m.shards[s].size(); ++i) {
      const std::string path = (dir / m.shards[s][i]).string();
      const ShardHeader h = read_shard_header(path);
      if (h.n_tokens != m.shard_tokens[s][i])
        fail(path, "has " + std::to_string(h.n_tokens) + " tokens but " + m.path + " says " +
                       std::to_string(m.shard_tokens[s][i]));
      if (dtype_name(h.dtype) != m.dtype)
        fail(path, std::string("holds ") + dtype_name(h.dtype) + " tokens but " + m.path + " says " + m.dtype);
      sum += h.n_tokens;
    }
    if (sum != m.tokens[s])
      fail(m.path, std::string(kSplitNames[s]) + " shards hold " + std::to_string(sum) + " tokens but the manifest says " +
                       std::to_string(m.tokens[s]));
    // The readers take every shard in the folder (list_shards), so one the manifest does not list would be read too.
    const std::regex name_re(std::string(kSplitNames[s]) + "_[0-9]{6}\\.bin");
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (std::regex_match(name, name_re) &&
          std::find(m.shards[s].begin(), m.shards[s].end(), name) == m.shards[s].end())
        fail(e.path().string(), "is not in " + m.path + ", yet training and evaluation would read it with the " +
                                    kSplitNames[s] + " shards: remove it, or run `streamsink data prepare` again");
    }
  }
}

}  // namespace streamsink
