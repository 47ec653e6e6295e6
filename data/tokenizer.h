// The sentencepiece tokenizer: training one from text files, and loading one to encode and decode.
//
// Reserved ids, fixed (model/config.h assumes sink_token_id = 4):
//   0 <unk>, 1 <s> (bos), 2 </s> (eos), 3 <pad>, then the sink symbols 4 <sink>, 5 <sink1>, 6 <sink2>, 7 <sink3>.
// The sinks are sentencepiece *control* symbols: ordinary text never encodes to them, not even the literal
// text "<sink>"; only code that asks for sink_id() puts them in a stream.
// Byte fallback is on, so any byte string encodes without <unk>. Normalization is the identity and whitespace is
// kept as is, so decode(encode(s)) == s for every byte string, except that a literal U+2581 (▁, sentencepiece's
// whitespace mark) comes back as a space. Bytes that are not well-formed UTF-8 (data/utf8.h), which
// sentencepiece's normalizer would replace by U+FFFD, are encoded here as their byte pieces <0xNN>, the text
// between them by sentencepiece, and decode gives byte pieces back as raw bytes. (For a model with a dummy prefix,
// an imported Llama tokenizer say, cutting the text would put a prefix before every part: such models keep
// sentencepiece's U+FFFD.)
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace streamsink {

struct TokenizerTrainConfig {
  std::vector<std::string> inputs;   // files or folders of text (plain or .gz), one sentence per line
  int64_t vocab_size = 4096;         // total, reserved ids and the 256 byte pieces included
  std::string model_type = "bpe";    // bpe | unigram
  std::string out;                   // the .model file to write
  int num_threads = 0;               // 0 = all cores
  int64_t max_sentences = 2'000'000; // lines sampled (uniformly, by reservoir) for training
  int64_t n_sink_symbols = 4;        // <sink>, <sink1>, ... reserved right after <pad>
  double progress_seconds = 10;      // a progress line on stderr this often while training; 0 = none
};

// Trains a sentencepiece model (byte_fallback) and writes it to cfg.out atomically; prints sentencepiece's progress.
void train_tokenizer(const TokenizerTrainConfig& cfg);

// The end of the piece of `text` that starts at `begin`, cut after a newline: just past the first '\n' at or after
// begin + min_bytes - 1, or the text's end (no such newline, or at most min_bytes left). Pieces cut there encode to
// the ids of the whole where Tokenizer::newline_cuts_are_exact().
size_t newline_piece_end(const std::string& text, size_t begin, size_t min_bytes);

// Name of the i-th sink symbol: "<sink>", "<sink1>", "<sink2>", ...
std::string sink_piece(int64_t i);

class Tokenizer {
 public:
  // Error naming the file if it is missing or not a sentencepiece model.
  static Tokenizer load(const std::string& path);

  // Thread-safe. No bos/eos is added.
  std::vector<int32_t> encode(const std::string& text) const;
  // Error for an id outside [0, vocab_size). Control ids (bos, eos, pad, sinks) decode to "".
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;  // the piece's surface form, e.g. "▁the", "<0x0A>", "<sink>"
  // Whether encoding a text in pieces cut after its newlines gives the ids of encoding it whole, as for the models
  // `tokenizer train` makes (identity normalisation, no dummy prefix, no piece spans a newline). Probed on a few
  // texts; a model with a dummy prefix (a Llama tokenizer.model, say) starts every piece with an extra "▁".
  bool newline_cuts_are_exact() const;
  // The ids of `text` in pieces cut after a newline, each at least `piece_bytes` long (newline_piece_end), stopping
  // once `max_tokens` ids are there (-1: all): the first max_tokens ids of encode(text) where newline cuts are exact,
  // without encoding the rest (else it encodes the whole text). The result may pass max_tokens by one piece's ids.
  std::vector<int32_t> encode_prefix(const std::string& text, int64_t max_tokens, size_t piece_bytes = 1 << 16) const;
  // Whether the model puts sentencepiece's dummy prefix ("▁") before every text, as Llama's tokenizer.model and
  // sentencepiece's defaults do; `tokenizer train`'s models do not. Probed by encoding "a".
  bool adds_dummy_prefix() const;

  int64_t vocab_size() const;
  int32_t unk_id() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t sink_id(int i = 0) const;  // the i-th reserved sink symbol; Error if the model has fewer
  int64_t n_sink_ids() const { return static_cast<int64_t>(sink_ids_.size()); }
  std::string checksum() const { return checksum_; }  // FNV-1a 64 of the model file's bytes, 16 hex digits
  const std::string& path() const { return path_; }

 private:
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  std::vector<int32_t> sink_ids_;
  bool exact_bytes_ = false;           // invalid UTF-8 goes to byte pieces (every <0xNN> exists, no dummy prefix)
  std::array<int32_t, 256> byte_id_{};  // byte → the id of its piece <0xNN>
  std::vector<int16_t> byte_of_id_;    // id → its byte, -1 for pieces that are not <0xNN>
  std::string checksum_;
  std::string path_;
};

// FNV-1a 64 of a byte string as 16 hex digits (also used for manifest checksums).
std::string fnv1a64_hex(const std::string& bytes);
uint64_t fnv1a64(const char* data, size_t n);

}  // namespace streamsink
