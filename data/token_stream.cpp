#include "data/token_stream.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "data/corpus.h"
#include "data/tokenizer.h"

namespace streamsink {

namespace {

namespace fs = std::filesystem;

// `where`: the index's context when the file is one shard of several, e.g. " (token 4 of this shard)".
[[noreturn]] void fail_id(const std::string& path, int64_t index, int64_t id, int64_t vocab_size,
                          const std::string& where = "") {
  fail(path, "token " + std::to_string(index) + " has id " + std::to_string(id) + where +
                 ", outside the model's vocabulary of " + std::to_string(vocab_size) +
                 " (was the data made with another tokenizer?)");
}

}  // namespace

bool looks_like_shard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in && (magic == kShardMagicU16 || magic == kShardMagicU32);
}

TokenStream TokenStream::from_tokens(std::vector<int32_t> tokens) {
  TokenStream s;
  s.n_ = static_cast<int64_t>(tokens.size());
  s.held_ = std::move(tokens);
  return s;
}

TokenStream TokenStream::open(const std::string& path, const std::string& tokenizer_path, int64_t max_tokens,
                              int64_t vocab_size) {
  if (!fs::exists(path)) fail(path, "no such file or directory (--data: a shard, a data folder or a text file)");
  TokenStream s;
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    files = list_shards(path, "test");
  } else if (looks_like_shard(path)) {
    files = {path};
  } else {
    if (fs::path(path).extension() == ".bin")
      fail(path, "has no token-shard header (llm.c magic 20240520 or 20240801): a damaged shard, or not a shard");
    std::string text;
    if (!read_document(path, &text))
      fail(path, "is neither a token shard nor text (binary content): --data takes a shard, a data folder or text");
    if (tokenizer_path.empty() || !fs::exists(tokenizer_path))
      fail(path, "is a text file, and tokenizing it needs the checkpoint's tokenizer.model (or --tokenizer), not found" +
                     (tokenizer_path.empty() ? std::string() : " at " + tokenizer_path));
    std::vector<int32_t> ids = Tokenizer::load(tokenizer_path).encode_prefix(text, max_tokens);  // not past the cap
    if (max_tokens >= 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= vocab_size) fail_id(path, static_cast<int64_t>(i), ids[i], vocab_size);
    s = from_tokens(std::move(ids));
  }
  // Shards: mapped, up to max_tokens. A whole shard's ids are checked against the vocabulary in one pass over the map
  // (Shard::scan), and searched for the first offending token only when that pass fails; a shard cut by the cap is
  // searched up to the cap alone (the rest is never read).
  for (const auto& f : files) {
    if (max_tokens >= 0 && s.n_ >= max_tokens) break;
    Shard shard = Shard::open(f);
    const int64_t take = max_tokens >= 0 ? std::min(shard.size(), max_tokens - s.n_) : shard.size();
    if (take == 0) continue;
    if (take < shard.size() || shard.scan(0, vocab_size).in_range != shard.size())
      for (int64_t i = 0; i < take; ++i)
        if (shard.at(i) < 0 || shard.at(i) >= vocab_size)
          fail_id(f, s.n_ + i, shard.at(i), vocab_size,
                  f == path ? "" : " (token " + std::to_string(i) + " of this shard, in the stream of " + path + ")");
    shard.release(0, take);  // the check touched those pages; the evaluation reads them again in order
    s.starts_.push_back(s.n_);
    s.n_ += take;
    s.shards_.push_back(std::move(shard));
  }
  s.starts_.push_back(s.n_);
  if (s.n_ < 2)
    fail(path, "yields " + std::to_string(s.n_) + " token" + (s.n_ == 1 ? "" : "s") +
                   "; at least 2 are needed (the first token is never scored)");
  return s;
}

void TokenStream::copy(int64_t begin, int64_t n, int64_t* out) const {
  if (begin < 0 || n < 0 || begin + n > n_)
    throw Error("TokenStream: tokens [" + std::to_string(begin) + ", " + std::to_string(begin + n) +
                ") are outside a stream of " + std::to_string(n_));
  if (!shards_.empty()) {
    // The shard holding `begin`, then on through the next ones.
    size_t k = std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin() - 1;
    while (n > 0) {
      const int64_t off = begin - starts_[k], len = std::min(n, starts_[k + 1] - begin);
      shards_[k].copy(off, len, out);
      out += len, begin += len, n -= len, ++k;
    }
    return;
  }
  std::copy(held_.begin() + begin, held_.begin() + begin + n, out);
}

void TokenStream::release(int64_t begin, int64_t n) const {
  for (size_t k = 0; k < shards_.size(); ++k) {  // each shard's part of the range, in its own indices
    const int64_t lo = std::max(begin, starts_[k]), hi = std::min(begin + n, starts_[k + 1]);
    if (hi > lo) shards_[k].release(lo - starts_[k], hi - lo);
  }
}

std::vector<int32_t> TokenStream::read(int64_t begin, int64_t n) const {
  std::vector<int64_t> wide(static_cast<size_t>(std::max<int64_t>(n, 0)));
  copy(begin, n, wide.data());
  return std::vector<int32_t>(wide.begin(), wide.end());
}

}  // namespace streamsink
