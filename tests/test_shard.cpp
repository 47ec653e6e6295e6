// data/shard.*: round trips, the exact llm.c header bytes, and every malformed-file error.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "data/shard.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using streamsink::Error;
using streamsink::Shard;
using streamsink::TokenDtype;
using streamsink::testing::TempDir;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

using streamsink::testing::expect_error;

void put_le32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

}  // namespace

TEST(Shard, DtypeForVocab) {
  EXPECT_EQ(streamsink::dtype_for_vocab(4096), TokenDtype::kU16);
  EXPECT_EQ(streamsink::dtype_for_vocab(65536), TokenDtype::kU16);
  EXPECT_EQ(streamsink::dtype_for_vocab(65537), TokenDtype::kU32);
  EXPECT_NO_THROW(streamsink::check_vocab_fits(65536, TokenDtype::kU16, "x"));
  expect_error([] { streamsink::check_vocab_fits(65537, TokenDtype::kU16, "tok.model"); },
               {"tok.model", "65537", "u16"});
}

TEST(Shard, RoundTripU16AndU32) {
  TempDir dir;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 5000; ++i) tokens.push_back((i * 7919) % 65536);
  for (auto dtype : {TokenDtype::kU16, TokenDtype::kU32}) {
    std::vector<int32_t> t = tokens;
    if (dtype == TokenDtype::kU32) t.push_back(200000);
    const std::string path = (dir.path() / "train_000000.bin").string();
    streamsink::write_shard(path, t, dtype);
    const auto h = streamsink::read_shard_header(path);
    EXPECT_EQ(h.n_tokens, static_cast<int64_t>(t.size()));
    EXPECT_EQ(h.dtype, dtype);
    EXPECT_EQ(h.version, dtype == TokenDtype::kU16 ? 1 : 7);  // llm.c: GPT-2 shards v1, Llama 3 shards v7
    const Shard s = Shard::open(path);
    ASSERT_EQ(s.size(), static_cast<int64_t>(t.size()));
    for (size_t i = 0; i < t.size(); ++i) ASSERT_EQ(s.at(static_cast<int64_t>(i)), t[i]);
    std::vector<int64_t> buf(100);
    s.copy(1234, 100, buf.data());
    for (int i = 0; i < 100; ++i) EXPECT_EQ(buf[i], t[1234 + i]);
    EXPECT_THROW(s.at(static_cast<int64_t>(t.size())), Error);
    EXPECT_THROW(s.copy(static_cast<int64_t>(t.size()) - 1, 2, buf.data()), Error);
    EXPECT_EQ(fs::file_size(path), 1024 + t.size() * (dtype == TokenDtype::kU16 ? 2 : 4));
    // No temporary left behind by the atomic write.
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
    EXPECT_EQ(files, 1);
  }
}

TEST(Shard, HeaderBytesMatchLlmC) {
  // What llm.c's write_datafile produces for tokens {1, 2, 65535} in u16: 256 int32 LE then uint16 LE.
  std::string expected(1024 + 6, '\0');
  put_le32(expected, 0, 20240520);
  put_le32(expected, 4, 1);
  put_le32(expected, 8, 3);
  const unsigned char body[] = {0x01, 0x00, 0x02, 0x00, 0xff, 0xff};
  std::memcpy(&expected[1024], body, 6);
  TempDir dir;
  const std::string path = (dir.path() / "a.bin").string();
  streamsink::write_shard(path, {1, 2, 65535}, TokenDtype::kU16);
  EXPECT_EQ(read_bytes(path), expected);

  std::string expected32(1024 + 8, '\0');
  put_le32(expected32, 0, 20240801);
  put_le32(expected32, 4, 7);  // llm.c's Llama 3 shards (dev/data/data_common.py: magic 20240801, version 7)
  put_le32(expected32, 8, 2);
  put_le32(expected32, 1024, 70000);
  put_le32(expected32, 1028, 5);
  streamsink::write_shard(path, {70000, 5}, TokenDtype::kU32);
  EXPECT_EQ(read_bytes(path), expected32);
  EXPECT_EQ(Shard::open(path).at(0), 70000);
  put_le32(expected32, 4, 1);  // what streamsink wrote before session 8: still read
  write_bytes(path, expected32);
  EXPECT_EQ(Shard::open(path).at(0), 70000);
  put_le32(expected32, 4, 2);
  write_bytes(path, expected32);
  expect_error([&] { Shard::open(path); }, {path, "unsupported shard version 2", "7 (or 1) for u32 shards"});
}

TEST(Shard, TokenTooLargeForU16IsAnErrorAndWritesNothing) {
  TempDir dir;
  const std::string path = (dir.path() / "train_000000.bin").string();
  expect_error([&] { streamsink::write_shard(path, {1, 65536}, TokenDtype::kU16); },
               {path, "65536", "u16"});
  EXPECT_FALSE(fs::exists(path));
  expect_error([&] { streamsink::write_shard(path, {-1}, TokenDtype::kU32); }, {path, "-1"});
}

TEST(Shard, MissingFile) {
  TempDir dir;
  const std::string path = (dir.path() / "nope.bin").string();
  expect_error([&] { streamsink::read_shard_header(path); }, {path, "no such file"});
  expect_error([&] { Shard::open(path); }, {path, "no such file"});
}

TEST(Shard, TruncatedWrongMagicWrongVersion) {
  TempDir dir;
  const std::string path = (dir.path() / "s.bin").string();
  streamsink::write_shard(path, {1, 2, 3, 4}, TokenDtype::kU16);
  const std::string good = read_bytes(path);

  write_bytes(path, good.substr(0, good.size() - 1));
  expect_error([&] { streamsink::read_shard_header(path); }, {path, "truncated", "4"});
  write_bytes(path, good + "xx");
  expect_error([&] { Shard::open(path); }, {path, "header says 4"});
  write_bytes(path, good.substr(0, 100));
  expect_error([&] { streamsink::read_shard_header(path); }, {path, "shorter than the 1024-byte header"});

  std::string bad = good;
  put_le32(bad, 0, 12345);
  write_bytes(path, bad);
  expect_error([&] { streamsink::read_shard_header(path); }, {path, "bad magic 12345"});

  bad = good;
  put_le32(bad, 4, 7);
  write_bytes(path, bad);
  expect_error([&] { streamsink::read_shard_header(path); }, {path, "version 7"});
}

TEST(Shard, ListShardsAndSplitTokens) {
  TempDir dir;
  const std::string d = dir.str();
  expect_error([&] { streamsink::list_shards(d, "train"); }, {d, "no train shards"});
  streamsink::write_shard(streamsink::shard_path(d, "train", 1), {4, 5}, TokenDtype::kU16);
  streamsink::write_shard(streamsink::shard_path(d, "train", 0), {1, 2, 3}, TokenDtype::kU16);
  streamsink::write_shard(streamsink::shard_path(d, "val", 0), {9}, TokenDtype::kU16);
  const auto list = streamsink::list_shards(d, "train");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(fs::path(list[0]).filename(), "train_000000.bin");
  EXPECT_EQ(fs::path(list[1]).filename(), "train_000001.bin");
  EXPECT_EQ(streamsink::read_split_tokens(d, "train"), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(streamsink::read_split_tokens(d, "train", 4), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(streamsink::read_split_tokens(d, "val"), (std::vector<int32_t>{9}));
  expect_error([&] { streamsink::list_shards(d, "test"); }, {d, "no test shards"});
  expect_error([&] { streamsink::list_shards(d + "/missing", "train"); }, {"missing", "no such directory"});
}

// scan() against std::max_element and std::count_if over what was written, in both dtypes (u32 past u16's range),
// and -1 / 0 for an empty shard.
TEST(Shard, ScanFindsTheLargestIdAndCountsARange) {
  TempDir dir;
  const std::vector<int32_t> small{5, 60000, 7, 0, 65535, 12}, large{3, 70000, 1 << 30, 9};
  streamsink::write_shard(dir.str() + "/a.bin", small, TokenDtype::kU16);
  streamsink::write_shard(dir.str() + "/b.bin", large, TokenDtype::kU32);
  streamsink::write_shard(dir.str() + "/c.bin", {}, TokenDtype::kU16);
  auto count = [](const std::vector<int32_t>& t, int64_t lo, int64_t hi) {
    return std::count_if(t.begin(), t.end(), [&](int32_t v) { return v >= lo && v < hi; });
  };
  const auto a = Shard::open(dir.str() + "/a.bin").scan(5, 13), b = Shard::open(dir.str() + "/b.bin").scan(9, 70001);
  EXPECT_EQ(a.max, *std::max_element(small.begin(), small.end()));
  EXPECT_EQ(a.in_range, count(small, 5, 13));
  EXPECT_EQ(b.max, *std::max_element(large.begin(), large.end()));
  EXPECT_EQ(b.in_range, count(large, 9, 70001));
  const auto c = Shard::open(dir.str() + "/c.bin").scan(0, 100);
  EXPECT_EQ(c.max, -1);
  EXPECT_EQ(c.in_range, 0);
}

namespace {
// This process's resident set (/proc/self/statm, file-backed mapped pages included), in bytes.
int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}
}  // namespace

// release(): the pages a scan made resident leave the resident set (measured against /proc/self/statm, the figure
// eval-stream's memory is judged by), and the tokens read the same afterwards, in both dtypes and at ranges that
// start and end inside a page.
TEST(Shard, ReleaseDropsReadPagesFromTheResidentSetAndReadsStillWork) {
  TempDir dir;
  std::vector<int32_t> toks(4 << 20);  // 8 MiB as u16
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 2654435761u) % 60000);
  streamsink::write_shard(dir.str() + "/big.bin", toks, TokenDtype::kU16);
  const Shard s = Shard::open(dir.str() + "/big.bin");
  const int64_t before = resident_bytes();
  s.scan(0, 1);  // touches every page
  const int64_t touched = resident_bytes();
  EXPECT_GT(touched - before, 6 << 20) << "the scan should have made most of the 8 MiB map resident";
  s.release(0, s.size());
  EXPECT_LT(resident_bytes() - before, 1 << 20) << "released pages still resident";
  // As eval-stream releases: consecutive ranges whose ends fall inside pages (65,520 u16 tokens after the 1 KiB
  // header). Every page goes, those across the boundaries too (rounded inwards they stayed: ~3% of the stream).
  s.scan(0, 1);
  for (int64_t b = 0; b < s.size(); b += 65520) s.release(b, std::min<int64_t>(65520, s.size() - b));
  EXPECT_LT(resident_bytes() - before, 64 << 10) << "pages across the ranges' boundaries still resident";
  std::vector<int64_t> got(1001);
  s.copy(12345, 1001, got.data());
  for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(got[i], toks[12345 + i]) << i;
  s.release(-5, 3), s.release(-5, 10), s.release(s.size() - 1, 100), s.release(7, 0);  // clipped or empty
  s.copy(0, 1001, got.data());
  for (int64_t i = 0; i < 1001; ++i) ASSERT_EQ(got[i], toks[i]) << i;
  streamsink::write_shard(dir.str() + "/u32.bin", {3, 70000, 1 << 30, 9}, TokenDtype::kU32);
  const Shard w = Shard::open(dir.str() + "/u32.bin");
  w.release(1, 2);
  EXPECT_EQ(w.at(2), 1 << 30);
}

// check_shard_vocab (`data inspect --tokenizer`): a vocabulary past u16's 65536 ids cannot be a u16 shard's (a u32
// shard's it can); an id anywhere in the shard, the last one included, at or past the vocabulary is refused; both
// name the shard and the tokenizer. A vocabulary that holds every id passes, an empty shard too.
TEST(Shard, CheckShardVocabRefusesATokenizerWhoseIdsTheShardCannotHoldOrDoesNotKnow) {
  TempDir dir;
  std::vector<int32_t> ids(5000, 7);
  ids.back() = 600;  // past the first tokens `inspect --show` prints
  const std::string u16 = dir.str() + "/u16.bin", u32 = dir.str() + "/u32.bin", empty = dir.str() + "/empty.bin";
  streamsink::write_shard(u16, ids, TokenDtype::kU16);
  streamsink::write_shard(u32, ids, TokenDtype::kU32);
  streamsink::write_shard(empty, {}, TokenDtype::kU16);
  using streamsink::check_shard_vocab;
  expect_error([&] { check_shard_vocab(Shard::open(u16), 70000, "big.model"); },
               {u16, "a vocabulary of 70000 ids does not fit u16 shards", "not made with big.model"});
  EXPECT_NO_THROW(check_shard_vocab(Shard::open(u32), 70000, "big.model"));
  for (const std::string& path : {u16, u32})
    expect_error([&] { check_shard_vocab(Shard::open(path), 512, "small.model"); },
                 {path, "holds token id 600, outside the 512 pieces of small.model", "not made with that tokenizer"});
  EXPECT_NO_THROW(check_shard_vocab(Shard::open(u16), 601, "t.model"));
  EXPECT_NO_THROW(check_shard_vocab(Shard::open(empty), 512, "t.model"));
}
