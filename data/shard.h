// Token shards in llm.c's layout, so shards interoperate with llm.c / nanoGPT tooling:
//   256 x int32 header {magic, version, n_tokens, 0, ...}  (1024 bytes, little-endian)
//   then n_tokens tokens, little-endian: uint16 when magic = 20240520 (version 1, llm.c's GPT-2 shards), uint32
//   when magic = 20240801 (version 7, llm.c's Llama 3 shards; version 1, which streamsink wrote before session 8,
//   is read too).
// Shards are named <split>_NNNNNN.bin inside a data directory (split = train | val | test).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace streamsink {

enum class TokenDtype { kU16, kU32 };

constexpr int32_t kShardMagicU16 = 20240520;
constexpr int32_t kShardMagicU32 = 20240801;
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardVersionU32 = 7;
constexpr int64_t kShardHeaderBytes = 256 * 4;

TokenDtype dtype_for_vocab(int64_t vocab_size);  // u16 when vocab <= 65536, else u32
int64_t dtype_bytes(TokenDtype dtype);           // 2 or 4
const char* dtype_name(TokenDtype dtype);        // "u16" | "u32"
// Error (naming `where`, ending with `hint`) when ids of a vocabulary of `vocab_size` cannot be stored as `dtype`.
void check_vocab_fits(int64_t vocab_size, TokenDtype dtype, const std::string& where,
                      const std::string& hint = "use u32 shards");

// Writes a whole shard atomically (temporary name + rename): a crash never leaves a half shard under `path`.
// Error when a token is negative or does not fit `dtype`.
void write_shard(const std::string& path, const std::vector<int32_t>& tokens, TokenDtype dtype);

struct ShardHeader {
  int32_t magic;
  int32_t version;
  int64_t n_tokens;
  TokenDtype dtype;
};
// Validates magic, version, and that the file size is exactly 1024 + n_tokens * dtype_bytes.
ShardHeader read_shard_header(const std::string& path);

// A read-only, memory-mapped shard. Copies share the mapping.
class Shard {
 public:
  static Shard open(const std::string& path);
  int64_t size() const { return n_tokens_; }
  int32_t at(int64_t i) const;                           // bounds-checked
  void copy(int64_t begin, int64_t n, int64_t* out) const;  // tokens [begin, begin+n) widened to int64
  struct Scan {
    int64_t max = -1;      // the largest id it holds (unsigned, as stored), -1 when empty
    int64_t in_range = 0;  // how many of its ids lie in [lo, hi)
  };
  Scan scan(int64_t lo = 0, int64_t hi = 0) const;  // one pass over the map
  // Drops the pages holding tokens [begin, begin + n) from this process's resident set, those they share with
  // neighbouring tokens included (madvise DONTNEED on the read-only shared map: the file and the page cache are
  // untouched, a later read faults them back in), so a reader going once through a long shard holds a bounded part
  // of it resident. Out-of-range parts are ignored.
  void release(int64_t begin, int64_t n) const;
  const std::string& path() const { return path_; }
  TokenDtype dtype() const { return dtype_; }

 private:
  struct Mapping;
  std::shared_ptr<const Mapping> map_;
  const uint8_t* tokens_ = nullptr;  // first token byte, inside map_
  int64_t n_tokens_ = 0;
  TokenDtype dtype_ = TokenDtype::kU16;
  std::string path_;
};

// That the shard `s` can hold the ids of the tokenizer `tokenizer_path` (of `vocab_size` pieces): its token type holds
// them (check_vocab_fits: a u16 shard no id past 65535), and no id in it lies outside the vocabulary (one pass over the
// shard, Shard::scan). Error naming the shard and the tokenizer otherwise: the shard was made with another tokenizer.
void check_shard_vocab(const Shard& s, int64_t vocab_size, const std::string& tokenizer_path);

// "DIR/<split>_000000.bin", ...
std::string shard_path(const std::string& data_dir, const std::string& split, int64_t index);
// The shards of a split, sorted; Error naming the directory when there are none.
std::vector<std::string> list_shards(const std::string& data_dir, const std::string& split);
// Shard names carry six digits (train_000000.bin): the readers match exactly six.
constexpr int64_t kMaxShardIndex = 999'999;
// The marker `data prepare` keeps in its output folder until the folder is complete (list_shards refuses it).
constexpr const char* kPrepareIncomplete = "prepare.incomplete";

// The concatenated tokens of a split (at most max_tokens when >= 0): the stream that streaming evaluation reads.
std::vector<int32_t> read_split_tokens(const std::string& data_dir, const std::string& split,
                                       int64_t max_tokens = -1);

}  // namespace streamsink
