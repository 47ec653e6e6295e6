#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "common/error.h"
#include "common/file_util.h"

// The header and tokens are little-endian on disk; we copy them as is, which is right on every host we build for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shard I/O assumes a little-endian host");

namespace streamsink {
namespace fs = std::filesystem;

TokenDtype dtype_for_vocab(int64_t vocab_size) { return vocab_size <= 65536 ? TokenDtype::kU16 : TokenDtype::kU32; }

int64_t dtype_bytes(TokenDtype dtype) { return dtype == TokenDtype::kU16 ? 2 : 4; }

const char* dtype_name(TokenDtype dtype) { return dtype == TokenDtype::kU16 ? "u16" : "u32"; }

void check_vocab_fits(int64_t vocab_size, TokenDtype dtype, const std::string& where, const std::string& hint) {
  if (vocab_size <= 0) fail(where, "vocabulary size " + std::to_string(vocab_size) + " is not positive");
  if (dtype == TokenDtype::kU16 && vocab_size > 65536)
    fail(where, "a vocabulary of " + std::to_string(vocab_size) + " ids does not fit u16 shards (at most 65536); " +
                    hint);
}

void write_shard(const std::string& path, const std::vector<int32_t>& tokens, TokenDtype dtype) {
  const int64_t max_id = dtype == TokenDtype::kU16 ? 65535 : INT32_MAX;
  int32_t header[256] = {};
  header[0] = dtype == TokenDtype::kU16 ? kShardMagicU16 : kShardMagicU32;
  header[1] = dtype == TokenDtype::kU16 ? kShardVersionU16 : kShardVersionU32;
  // llm.c stores the count in one int32: a shard holds at most 2^31-1 tokens.
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) fail(path, "more than 2^31-1 tokens in one shard");
  header[2] = static_cast<int32_t>(tokens.size());

  // Convert first, so a bad token is reported before anything touches the disk.
  std::vector<uint8_t> body(tokens.size() * dtype_bytes(dtype));
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    if (t < 0 || t > max_id)
      fail(path, "token id " + std::to_string(t) + " at position " + std::to_string(i) + " does not fit " +
                     dtype_name(dtype) + " shards");
    if (dtype == TokenDtype::kU16) {
      const uint16_t v = static_cast<uint16_t>(t);
      std::memcpy(&body[i * 2], &v, 2);
    } else {
      const uint32_t v = static_cast<uint32_t>(t);
      std::memcpy(&body[i * 4], &v, 4);
    }
  }

  AtomicFile f(path);  // PATH.tmp.<pid>, renamed over PATH when complete; removed if a write fails
  f.write(header, sizeof header);
  f.write(body.data(), body.size());
  f.commit();
}

ShardHeader read_shard_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, fs::exists(path) ? "cannot open for reading" : "no such file");
  int32_t header[256];
  f.read(reinterpret_cast<char*>(header), sizeof header);
  if (f.gcount() != static_cast<std::streamsize>(sizeof header))
    fail(path, "truncated shard: shorter than the 1024-byte header");
  ShardHeader h{header[0], header[1], header[2], TokenDtype::kU16};
  if (h.magic == kShardMagicU16) {
    h.dtype = TokenDtype::kU16;
  } else if (h.magic == kShardMagicU32) {
    h.dtype = TokenDtype::kU32;
  } else {
    fail(path, "bad magic " + std::to_string(h.magic) + " (expected " + std::to_string(kShardMagicU16) +
                   " for u16 or " + std::to_string(kShardMagicU32) + " for u32 tokens): not a token shard");
  }
  const bool u16 = h.dtype == TokenDtype::kU16;
  if (u16 ? h.version != kShardVersionU16 : (h.version != kShardVersionU32 && h.version != 1))
    fail(path, "unsupported shard version " + std::to_string(h.version) + " (expected " +
                   (u16 ? std::to_string(kShardVersionU16) + " for u16 shards"
                        : std::to_string(kShardVersionU32) + " (or 1) for u32 shards") + ")");
  if (h.n_tokens < 0) fail(path, "negative token count " + std::to_string(h.n_tokens) + " in the header");
  const int64_t expected = kShardHeaderBytes + h.n_tokens * dtype_bytes(h.dtype);
  const auto actual = static_cast<int64_t>(fs::file_size(path));
  if (actual != expected)
    fail(path, "truncated or corrupt shard: the header says " + std::to_string(h.n_tokens) + " " +
                   dtype_name(h.dtype) + " tokens (" + std::to_string(expected) + " bytes) but the file has " +
                   std::to_string(actual) + " bytes");
  return h;
}

struct Shard::Mapping {
  void* addr = nullptr;
  size_t len = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, len);
  }
};

Shard Shard::open(const std::string& path) {
  const ShardHeader h = read_shard_header(path);
  Shard s;
  s.path_ = path;
  s.dtype_ = h.dtype;
  s.n_tokens_ = h.n_tokens;
  auto m = std::make_shared<Mapping>();
  m->len = static_cast<size_t>(kShardHeaderBytes + h.n_tokens * dtype_bytes(h.dtype));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  void* addr = ::mmap(nullptr, m->len, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (addr == MAP_FAILED) fail(path, std::string("cannot memory-map: ") + std::strerror(err));
  m->addr = addr;
  s.tokens_ = static_cast<const uint8_t*>(addr) + kShardHeaderBytes;
  s.map_ = std::move(m);
  return s;
}

int32_t Shard::at(int64_t i) const {
  if (i < 0 || i >= n_tokens_)
    fail(path_, "token index " + std::to_string(i) + " out of range [0, " + std::to_string(n_tokens_) + ")");
  if (dtype_ == TokenDtype::kU16) {
    uint16_t v;
    std::memcpy(&v, tokens_ + i * 2, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, tokens_ + i * 4, 4);
  return static_cast<int32_t>(v);
}

void Shard::release(int64_t begin, int64_t n) const {
  const int64_t end = std::min(begin + std::max<int64_t>(n, 0), n_tokens_);
  begin = std::max<int64_t>(begin, 0);
  if (end <= begin || !map_) return;
  // Whole pages, rounded outwards: a page the range shares with tokens outside it goes too (a later read of those
  // faults it back in from the page cache). Rounded inwards, the page across each boundary of consecutive releases
  // would never leave: one page per call, ~3% of a u16 stream read in 64k-token segments.
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const int64_t w = dtype_bytes(dtype_);
  const auto base = reinterpret_cast<uintptr_t>(map_->addr);  // page-aligned (mmap)
  const uintptr_t lo = std::max(base, reinterpret_cast<uintptr_t>(tokens_ + begin * w) / page * page);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(tokens_ + end * w) + page - 1) / page * page;  // in the map's
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);  // last page at most; advice: failure changes nothing
}

void Shard::copy(int64_t begin, int64_t n, int64_t* out) const {
  if (begin < 0 || n < 0 || begin + n > n_tokens_)
    fail(path_, "token range [" + std::to_string(begin) + ", " + std::to_string(begin + n) + ") out of range [0, " +
                    std::to_string(n_tokens_) + ")");
  if (dtype_ == TokenDtype::kU16) {
    const uint8_t* p = tokens_ + begin * 2;
    for (int64_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, 2);
      out[i] = v;
    }
  } else {
    const uint8_t* p = tokens_ + begin * 4;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, p + i * 4, 4);
      out[i] = v;
    }
  }
}

namespace {
// The largest of n little-endian unsigned T read from p (unaligned), and how many lie in [lo, hi).
template <typename T>
Shard::Scan scan_stored(const uint8_t* p, int64_t n, int64_t lo, int64_t hi) {
  Shard::Scan r;
  T m = 0;
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    m = std::max(m, v);
    r.in_range += static_cast<int64_t>(v) >= lo && static_cast<int64_t>(v) < hi;
  }
  if (n > 0) r.max = static_cast<int64_t>(m);
  return r;
}
}  // namespace

Shard::Scan Shard::scan(int64_t lo, int64_t hi) const {
  return dtype_ == TokenDtype::kU16 ? scan_stored<uint16_t>(tokens_, n_tokens_, lo, hi)
                                    : scan_stored<uint32_t>(tokens_, n_tokens_, lo, hi);
}

void check_shard_vocab(const Shard& s, int64_t vocab_size, const std::string& tokenizer_path) {
  check_vocab_fits(vocab_size, s.dtype(), s.path(),
                   "this shard was not made with " + tokenizer_path + " (pass the tokenizer its data was prepared with)");
  const Shard::Scan scan = s.scan();
  if (scan.max >= vocab_size)
    fail(s.path(), "holds token id " + std::to_string(scan.max) + ", outside the " + std::to_string(vocab_size) +
                       " pieces of " + tokenizer_path +
                       ": it was not made with that tokenizer (pass the one its data was prepared with)");
}

std::string shard_path(const std::string& data_dir, const std::string& split, int64_t index) {
  char name[64];
  std::snprintf(name, sizeof name, "%s_%06lld.bin", split.c_str(), static_cast<long long>(index));
  return (fs::path(data_dir) / name).string();
}

std::vector<std::string> list_shards(const std::string& data_dir, const std::string& split) {
  if (split != "train" && split != "val" && split != "test")
    fail(data_dir, "unknown split '" + split + "' (expected train, val or test)");
  std::error_code ec;
  if (!fs::is_directory(data_dir, ec))
    fail(data_dir, fs::exists(data_dir, ec) ? "not a directory" : "no such directory");
  if (fs::exists(fs::path(data_dir) / kPrepareIncomplete, ec))
    fail(data_dir, std::string("a `streamsink data prepare` into this folder did not finish (") + kPrepareIncomplete +
                       " is there): its shards may mix two runs; run it again");
  const std::regex name_re(split + "_[0-9]{6}\\.bin");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(data_dir)) {
    if (!e.is_regular_file()) continue;
    if (std::regex_match(e.path().filename().string(), name_re)) out.push_back(e.path().string());
  }
  if (out.empty())
    fail(data_dir, "no " + split + " shards (" + split + "_000000.bin ...); `streamsink data prepare` makes them" +
                       (split == "train" ? std::string()
                                         : " (with --" + split + "-fraction above 0 and three or more documents, a " +
                                               split + " split gets at least one)"));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int32_t> read_split_tokens(const std::string& data_dir, const std::string& split, int64_t max_tokens) {
  std::vector<int32_t> out;
  std::vector<int64_t> buf;
  for (const auto& path : list_shards(data_dir, split)) {
    const Shard s = Shard::open(path);
    int64_t n = s.size();
    if (max_tokens >= 0) n = std::min<int64_t>(n, max_tokens - static_cast<int64_t>(out.size()));
    buf.resize(static_cast<size_t>(n));
    s.copy(0, n, buf.data());
    out.insert(out.end(), buf.begin(), buf.end());
    if (max_tokens >= 0 && static_cast<int64_t>(out.size()) >= max_tokens) break;
  }
  return out;
}

}  // namespace streamsink
