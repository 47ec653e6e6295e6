// The evaluation stream, read a range at a time. Token shards (one file, or a data folder's test split) stay
// memory-mapped and are never copied whole, so a stream of any length costs constant memory: what streaming
// evaluation promises for the cache holds for the whole command. A text file is tokenized into memory (its text is
// read whole anyway), under a cap only as far as the cap where the tokenizer allows cutting it after newlines
// (Tokenizer::encode_prefix).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace streamsink {

// Whether the file at `path` starts with an llm.c shard header's magic number.
bool looks_like_shard(const std::string& path);

class TokenStream {
 public:
  // The stream at `path`: a shard file, a data folder (its `test` split, shards concatenated) or a text file
  // (tokenized with the sentencepiece model at `tokenizer_path`; gzip is read too); at most max_tokens (-1 = all).
  // Error naming the path when there is nothing there, the file cannot be read, it is neither a shard nor text
  // (binary content, or a .bin without a shard header), it yields fewer than 2 tokens, or a token id is outside
  // [0, vocab_size) (the message names the token's index and id).
  static TokenStream open(const std::string& path, const std::string& tokenizer_path, int64_t max_tokens,
                          int64_t vocab_size);
  // A stream held in memory (tests, callers that already have the ids).
  static TokenStream from_tokens(std::vector<int32_t> tokens);

  int64_t size() const { return n_; }
  // Tokens [begin, begin + n) widened to int64; Error when the range is outside the stream.
  void copy(int64_t begin, int64_t n, int64_t* out) const;
  std::vector<int32_t> read(int64_t begin, int64_t n) const;
  // Tokens [begin, begin + n) are done with: their mapped pages leave the resident set (Shard::release; a later
  // read still works). A reader that releases what it has read keeps the stream's resident part bounded.
  void release(int64_t begin, int64_t n) const;

 private:
  std::vector<Shard> shards_;   // mapped: shard k holds tokens [starts_[k], starts_[k + 1])
  std::vector<int64_t> starts_;
  std::vector<int32_t> held_;   // a text file's tokens (or from_tokens)
  int64_t n_ = 0;
};

}  // namespace streamsink
