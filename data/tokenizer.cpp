#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "common/error.h"
#include "common/file_util.h"
#include "data/corpus.h"
#include "data/utf8.h"

namespace streamsink {
namespace fs = std::filesystem;

uint64_t fnv1a64(const char* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string fnv1a64_hex(const std::string& bytes) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(bytes.data(), bytes.size())));
  return hex;
}

std::string sink_piece(int64_t i) { return i == 0 ? "<sink>" : "<sink" + std::to_string(i) + ">"; }

namespace {

// Feeds sentencepiece the lines of every document, reading .gz transparently (sentencepiece's own reader cannot).
class CorpusLines : public sentencepiece::SentenceIterator {
 public:
  explicit CorpusLines(std::vector<Document> docs) : docs_(std::move(docs)) { Next(); }
  bool done() const override { return done_.load(std::memory_order_relaxed); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }
  void Next() override {
    for (;;) {
      if (pos_ < text_.size()) {
        size_t end = text_.find('\n', pos_);
        if (end == std::string::npos) end = text_.size();
        line_.assign(text_, pos_, end - pos_);
        pos_ = end + 1;
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        if (line_.empty()) continue;
        lines_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (next_doc_ >= docs_.size()) {
        done_ = true;
        return;
      }
      const Document& d = docs_[next_doc_++];
      pos_ = 0;
      (read_document(d.path, &text_) ? files_ : skipped_).fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Read from the progress thread as sentencepiece's reading advances them.
  int64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  int64_t files() const { return files_.load(std::memory_order_relaxed); }
  int64_t skipped() const { return skipped_.load(std::memory_order_relaxed); }

 private:
  std::vector<Document> docs_;
  size_t next_doc_ = 0;
  std::string text_;
  size_t pos_ = 0;
  std::string line_;
  std::atomic<bool> done_{false};
  std::atomic<int64_t> lines_{0}, files_{0}, skipped_{0};
};

// sentencepiece's trainer has no progress callback (and its own log is ~350 lines for a small model), so a thread
// prints a line every period while it runs: the reader's counts while sentencepiece samples the lines, then the
// time spent building the pieces. Stopped and joined by the destructor.
class TrainingProgress {
 public:
  TrainingProgress(const CorpusLines& lines, int64_t n_docs, double period_s)
      : lines_(lines), n_docs_(n_docs), period_(period_s), t0_(std::chrono::steady_clock::now()) {
    if (period_s > 0) thread_ = std::thread([this] { run(); });
  }
  ~TrainingProgress() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> g(m_);
    while (!cv_.wait_for(g, period_, [this] { return stop_; })) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
      const int64_t read = lines_.files() + lines_.skipped();
      std::fprintf(stderr, "tokenizer train: %.0f s: read %lld of %lld files, %lld lines%s\n", s,
                   static_cast<long long>(read), static_cast<long long>(n_docs_),
                   static_cast<long long>(lines_.lines()),
                   lines_.done() ? "; sentencepiece is building the pieces" : "");
      std::fflush(stderr);
    }
  }
  const CorpusLines& lines_;
  const int64_t n_docs_;
  const std::chrono::duration<double> period_;
  const std::chrono::steady_clock::time_point t0_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

void train_tokenizer(const TokenizerTrainConfig& cfg) {
  if (cfg.out.empty()) throw Error("tokenizer train: no output file (--out)");
  if (cfg.inputs.empty()) throw Error("tokenizer train: no input (--input)");
  if (cfg.model_type != "bpe" && cfg.model_type != "unigram")
    fail(cfg.out, "model type '" + cfg.model_type + "' is not bpe or unigram");
  if (cfg.n_sink_symbols < 0 || cfg.n_sink_symbols > 64)
    fail(cfg.out, "n_sink_symbols " + std::to_string(cfg.n_sink_symbols) + " outside [0, 64]");
  // 4 specials + sinks + 256 byte pieces must fit with room for real pieces.
  const int64_t min_vocab = 4 + cfg.n_sink_symbols + 256 + 16;
  if (cfg.vocab_size < min_vocab)
    fail(cfg.out, "vocab size " + std::to_string(cfg.vocab_size) + " is too small: the reserved ids and 256 byte "
                  "pieces need " + std::to_string(min_vocab - 16) + ", and a few more for real pieces (>= " +
                  std::to_string(min_vocab) + ")");
  auto docs = find_documents(cfg.inputs);
  if (docs.empty()) throw Error("tokenizer train: no files under the inputs");
  // the output's folder before the training, not after it (created as other commands create theirs, once the
  // inputs are known good: a refused command leaves nothing behind)
  prepare_output_folder(cfg.out, "--out");

  std::string sinks;
  for (int64_t i = 0; i < cfg.n_sink_symbols; ++i) sinks += (i ? "," : "") + sink_piece(i);
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  // sentencepiece accepts 1..128 training threads; a bigger machine (or --threads) is capped, not an error.
  const int threads = std::min(128, cfg.num_threads > 0 ? cfg.num_threads : static_cast<int>(hw));
  std::unordered_map<std::string, std::string> kw = {
      // No model_prefix: the model comes back serialized and we write it ourselves, atomically.
      {"model_type", cfg.model_type},
      {"vocab_size", std::to_string(cfg.vocab_size)},
      {"byte_fallback", "true"},
      {"unk_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"pad_id", "3"},
      {"unk_piece", "<unk>"}, {"bos_piece", "<s>"}, {"eos_piece", "</s>"}, {"pad_piece", "<pad>"},
      // Control symbols take the lowest free ids in order, i.e. 4, 5, ...: the sinks.
      {"control_symbols", sinks},
      // Identity normalization, whitespace kept, no dummy prefix: decode(encode(s)) == s, and encoding text in
      // pieces split after '\n' gives the same ids as encoding it whole (no piece contains '\n': training
      // sentences are lines), which data/prepare.cpp relies on to encode big files in parallel.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "false"},
      {"allow_whitespace_only_pieces", "true"},  // runs of indentation become one piece
      {"split_digits", "true"},                 // as Llama: numbers are digit sequences
      {"character_coverage", "0.9995"},
      {"input_sentence_size", std::to_string(cfg.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(threads)},
      {"max_sentence_length", "16384"},
      {"minloglevel", "1"},  // warnings and errors only: its INFO log is ~350 lines for a small model
  };
  if (cfg.model_type == "bpe") kw["max_sentencepiece_length"] = "16";

  std::fprintf(stderr, "tokenizer train: %zu files, vocab %lld, %s, %d threads, sampling up to %lld lines\n",
               docs.size(), static_cast<long long>(cfg.vocab_size), cfg.model_type.c_str(), threads,
               static_cast<long long>(cfg.max_sentences));
  const auto t0 = std::chrono::steady_clock::now();
  const auto n_docs = static_cast<int64_t>(docs.size());
  CorpusLines lines(std::move(docs));
  std::string model;
  sentencepiece::util::Status st;
  {
    TrainingProgress progress(lines, n_docs, cfg.progress_seconds);
    st = sentencepiece::SentencePieceTrainer::Train(kw, &lines, &model);
  }
  if (!st.ok()) fail(cfg.out, "sentencepiece training failed: " + std::string(st.message()));

  write_file_atomic(cfg.out, model);  // a failed write leaves neither a half model nor its temporary file
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "tokenizer train: read %lld lines from %lld files (%lld binary skipped); wrote %s in %.1f s\n",
               static_cast<long long>(lines.lines()), static_cast<long long>(lines.files()),
               static_cast<long long>(lines.skipped()), cfg.out.c_str(), secs);
}

Tokenizer Tokenizer::load(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.empty()) fail(path, "empty file: not a sentencepiece model");
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto st = sp->LoadFromSerializedProto(bytes);
  if (!st.ok() || sp->GetPieceSize() <= 0)
    fail(path, "not a sentencepiece model (" + std::string(st.message()) + ")");
  Tokenizer t;
  t.path_ = path;
  t.checksum_ = fnv1a64_hex(bytes);
  // Sinks are the consecutive control symbols <sink>, <sink1>, ... wherever the model put them.
  for (int64_t i = 0;; ++i) {
    const int id = sp->PieceToId(sink_piece(i));
    if (id == sp->unk_id() || !sp->IsControl(id)) break;
    t.sink_ids_.push_back(id);
  }
  t.sp_ = std::move(sp);
  t.byte_of_id_.assign(static_cast<size_t>(t.sp_->GetPieceSize()), -1);
  bool all_bytes = true;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const int id = t.sp_->PieceToId(name);
    all_bytes = all_bytes && t.sp_->IsByte(id);
    t.byte_id_[static_cast<size_t>(b)] = id;
    if (t.sp_->IsByte(id)) t.byte_of_id_[static_cast<size_t>(id)] = static_cast<int16_t>(b);
  }
  t.exact_bytes_ = all_bytes && !t.adds_dummy_prefix();
  return t;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int32_t> out;
  std::vector<int> ids;
  auto encode_valid = [&](std::string_view part) {  // well-formed UTF-8: sentencepiece's own segmentation
    if (part.empty()) return;
    const auto st = sp_->Encode(part, &ids);
    if (!st.ok()) fail(path_, "encode failed: " + std::string(st.message()));
    out.insert(out.end(), ids.begin(), ids.end());
  };
  size_t bad = utf8_first_invalid(text);
  if (bad == text.size() || !exact_bytes_) {
    encode_valid(text);
    return out;
  }
  // Cut at every byte that starts no well-formed sequence: the parts between go to sentencepiece, each such byte
  // becomes its byte piece.
  for (size_t p = 0;;) {
    encode_valid(std::string_view(text).substr(p, bad - p));
    if (bad == text.size()) break;
    out.push_back(byte_id_[static_cast<unsigned char>(text[bad])]);
    p = bad + 1;
    bad = utf8_first_invalid(text, p);
  }
  return out;
}

bool Tokenizer::adds_dummy_prefix() const {
  // A lone letter: "a" (or its byte piece) as is, "▁a" (or a lone "▁" first) after a dummy prefix.
  const auto ids = encode("a");
  return !ids.empty() && piece(ids.front()).rfind("\xe2\x96\x81", 0) == 0;
}

size_t newline_piece_end(const std::string& text, size_t begin, size_t min_bytes) {
  if (text.size() - begin <= min_bytes) return text.size();
  const size_t nl = text.find('\n', begin + min_bytes - 1);
  return nl == std::string::npos ? text.size() : nl + 1;
}

std::vector<int32_t> Tokenizer::encode_prefix(const std::string& text, int64_t max_tokens, size_t piece_bytes) const {
  if (max_tokens < 0 || !newline_cuts_are_exact()) return encode(text);
  std::vector<int32_t> ids;
  for (size_t p = 0; p < text.size() && static_cast<int64_t>(ids.size()) < max_tokens;) {
    const size_t q = newline_piece_end(text, p, std::max<size_t>(1, piece_bytes));
    const auto part = encode(text.substr(p, q - p));
    ids.insert(ids.end(), part.begin(), part.end());
    p = q;
  }
  return ids;
}

bool Tokenizer::newline_cuts_are_exact() const {
  for (const std::string text : {"a\nb", "Hello world.\n  indented line\n", "x\n\ny z\n", "\nstart", "end\n\n",
                                 "tab\there\n spaced  words\n", "\xc3\xa9t\xc3\xa9\n\xe2\x96\x81mark"}) {
    std::vector<int32_t> joined;
    for (size_t p = 0; p < text.size();) {
      const size_t nl = text.find('\n', p);
      const size_t q = nl == std::string::npos ? text.size() : nl + 1;
      const auto part = encode(text.substr(p, q - p));
      joined.insert(joined.end(), part.begin(), part.end());
      p = q;
    }
    if (joined != encode(text)) return false;
  }
  return true;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const int n = sp_->GetPieceSize();
  for (const int32_t id : ids)
    if (id < 0 || id >= n)
      fail(path_, "cannot decode id " + std::to_string(id) + ": outside the vocabulary [0, " + std::to_string(n) + ")");
  std::string out, part;
  auto decode_run = [&](size_t from, size_t to) {  // sentencepiece decodes what lies between byte pieces
    if (from == to) return;
    const auto st = sp_->Decode(std::vector<int>(ids.begin() + static_cast<std::ptrdiff_t>(from),
                                                 ids.begin() + static_cast<std::ptrdiff_t>(to)),
                                &part);
    if (!st.ok()) fail(path_, "decode failed: " + std::string(st.message()));
    out += part;
  };
  if (!exact_bytes_) {
    decode_run(0, ids.size());
    return out;
  }
  // Byte pieces come back as raw bytes (sentencepiece would turn bytes that make no well-formed UTF-8 into U+FFFD).
  size_t run = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int16_t b = byte_of_id_[static_cast<size_t>(ids[i])];
    if (b < 0) continue;
    decode_run(run, i);
    out.push_back(static_cast<char>(b));
    run = i + 1;
  }
  decode_run(run, ids.size());
  return out;
}

std::string Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= sp_->GetPieceSize()) fail(path_, "id " + std::to_string(id) + " outside the vocabulary");
  return sp_->IdToPiece(id);
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t Tokenizer::unk_id() const { return sp_->unk_id(); }
int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }
int32_t Tokenizer::pad_id() const { return sp_->pad_id(); }

int32_t Tokenizer::sink_id(int i) const {
  if (i < 0 || i >= n_sink_ids())
    fail(path_, "sink symbol " + std::to_string(i) + " requested but the model reserves " +
                    std::to_string(n_sink_ids()) + " (<sink>, <sink1>, ...)");
  return sink_ids_[static_cast<size_t>(i)];
}

}  // namespace streamsink
