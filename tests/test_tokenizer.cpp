// data/tokenizer.*: reserved ids, sink symbols that text can never produce, byte-fallback round trips on
// mixed-script Unicode, what happens to invalid UTF-8, and load errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/error.h"
#include "data/tokenizer.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using streamsink::Error;
using streamsink::Tokenizer;
using streamsink::testing::TempDir;

namespace {

std::string corpus_dir() { return streamsink::testing::source_dir() + "/tests/data/corpus"; }

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// One tokenizer for the whole suite, trained on tests/data (the alphabet of its mixed scripts is ~400 symbols,
// so 1000 leaves room for a few hundred merges). Training takes well under a second.
class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    streamsink::TokenizerTrainConfig cfg;
    cfg.inputs = {corpus_dir()};
    cfg.vocab_size = 1000;
    cfg.out = (dir_->path() / "tok.model").string();
    cfg.num_threads = 2;
    streamsink::train_tokenizer(cfg);
    tok_ = new Tokenizer(Tokenizer::load(cfg.out));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static TempDir* dir_;
  static Tokenizer* tok_;
};
TempDir* TokenizerTest::dir_ = nullptr;
Tokenizer* TokenizerTest::tok_ = nullptr;

using streamsink::testing::expect_error;

}  // namespace

TEST_F(TokenizerTest, ReservedIdsAndSinks) {
  const Tokenizer& t = *tok_;
  EXPECT_EQ(t.vocab_size(), 1000);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.pad_id(), 3);
  ASSERT_EQ(t.n_sink_ids(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t.sink_id(i), 4 + i);
  EXPECT_EQ(t.sink_id(), 4);  // model/config.h's sink_token_id
  EXPECT_EQ(t.piece(4), "<sink>");
  EXPECT_EQ(t.piece(7), "<sink3>");
  EXPECT_EQ(t.piece(1), "<s>");
  EXPECT_EQ(t.piece(2), "</s>");
  expect_error([&] { t.sink_id(4); }, {"tok.model", "sink symbol 4"});
}

TEST_F(TokenizerTest, RoundTripMixedScripts) {
  const std::string text = read_text(corpus_dir() + "/mixed_scripts.txt");
  ASSERT_GT(text.size(), 1000u);
  const auto ids = tok_->encode(text);
  for (const int32_t id : ids) ASSERT_NE(id, tok_->unk_id());
  EXPECT_EQ(tok_->decode(ids), text);
  // Characters never seen in training go through byte fallback and still round-trip.
  for (const std::string s : {"ℵ₀ ⊗ ⟨ψ|φ⟩ 𝔽𝕠𝕠 𓂀 ꙮ", "  two leading spaces, trailing tab\t", "line\n\n\nbreaks\r\n",
                              "🧑🏽‍🚀 家族 👨‍👩‍👧‍👦", "", " ", "a"}) {
    const auto v = tok_->encode(s);
    for (const int32_t id : v) EXPECT_NE(id, tok_->unk_id()) << s;
    EXPECT_EQ(tok_->decode(v), s);
  }
}

// Issue 4: "byte fallback so any input round-trips". sentencepiece's normalizer would replace every byte that
// starts no well-formed UTF-8 sequence by U+FFFD; the tokenizer encodes such bytes as their byte pieces instead, so
// decode(encode(s)) == s for any byte string. Oracles: the bytes themselves, the byte pieces' names, and
// sentencepiece's own ids for the well-formed text between the bad bytes.
TEST_F(TokenizerTest, InvalidUtf8RoundTripsThroughBytePieces) {
  const std::vector<std::string> cases = {
      std::string("ok \xff\xfe end \xc3") + "(" + "\x80",  // stray bytes, a lead byte without its continuation
      "\xc0\x80 overlong NUL, \xe0\x80\xaf overlong slash",      // overlong forms
      "surrogate \xed\xa0\x80 and past U+10FFFF \xf4\x90\x80\x80, \xf5\xf8\xfc",
      "caf\xe9 latin-1 \xe9t\xe9\n\tna\xefve",                  // latin-1 text
      "valid \xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82 then cut \xf0\x9f\x99",  // a 4-byte sequence cut short at the end
      "\x80", "\xff\xff\xff", "a\xff" "b\xff" "c",
  };
  for (const auto& s : cases) {
    const auto ids = tok_->encode(s);
    for (const int32_t id : ids) EXPECT_NE(id, tok_->unk_id()) << s;
    EXPECT_EQ(tok_->decode(ids), s);
  }
  EXPECT_EQ(tok_->encode("\xff"), std::vector<int32_t>{tok_->encode("\xff").at(0)});
  EXPECT_EQ(tok_->piece(tok_->encode("\xff").at(0)), "<0xFF>");
  // The well-formed parts are sentencepiece's own: "a", the byte, "b c" encoded alone.
  std::vector<int32_t> want = tok_->encode("abc def");
  want.push_back(tok_->encode("\x80").at(0));
  const auto tail = tok_->encode(" ghi");
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(tok_->encode("abc def\x80 ghi"), want);
  // Random byte strings, most of them far from UTF-8.
  std::mt19937 rng(5);
  for (int n = 0; n < 300; ++n) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 4 == 0 ? 'a' + rng() % 26 : rng() % 256);
    const auto ids = tok_->encode(s);
    ASSERT_EQ(tok_->decode(ids), s) << "case " << n;
  }
}

TEST_F(TokenizerTest, SinkIdsNeverComeFromText) {
  const std::string text = "<sink> <sink1><sink2>x<sink3> <s></s><pad><unk> [sink] <sink>";
  const auto ids = tok_->encode(text);
  for (const int32_t id : ids) {
    EXPECT_GE(id, 8) << "reserved id " << id << " produced by ordinary text";
  }
  EXPECT_EQ(tok_->decode(ids), text);
  // U+2581 is sentencepiece's own whitespace mark: text containing it encodes fine but decodes with a space
  // there (the one exception to the round trip, documented in data/tokenizer.h).
  const auto mark = tok_->encode("a\u2581<sink>");
  for (const int32_t id : mark) EXPECT_GE(id, 8);
  EXPECT_EQ(tok_->decode(mark), "a <sink>");
  // And the sinks, being control symbols, decode to nothing.
  EXPECT_EQ(tok_->decode({4, 5, 6, 7}), "");
}

TEST_F(TokenizerTest, EncodingSplitAfterNewlinesEqualsWhole) {
  // data/prepare.cpp encodes big documents in pieces cut after '\n'; that must not change a single id.
  const std::string text = read_text(corpus_dir() + "/streaming.txt") + read_text(corpus_dir() + "/mixed_scripts.txt");
  const auto whole = tok_->encode(text);
  std::vector<int32_t> pieces;
  size_t p = 0;
  while (p < text.size()) {
    size_t q = text.find('\n', p);
    q = q == std::string::npos ? text.size() : q + 1;
    const auto v = tok_->encode(text.substr(p, q - p));
    pieces.insert(pieces.end(), v.begin(), v.end());
    p = q;
  }
  EXPECT_EQ(pieces, whole);
}

// encode_prefix (eval-stream's text files, capped by --tokens): the first max_tokens ids of the whole encoding,
// from pieces cut after newlines, with no piece encoded past the one that reaches the cap.
TEST_F(TokenizerTest, EncodePrefixIsTheWholeEncodingsFirstIds) {
  std::string text;
  for (int i = 0; i < 4; ++i) text += read_text(corpus_dir() + "/streaming.txt") + read_text(corpus_dir() + "/mixed_scripts.txt");
  const auto whole = tok_->encode(text);
  ASSERT_GT(whole.size(), 400u);
  for (const int64_t cap : {int64_t{1}, int64_t{57}, int64_t{400}, static_cast<int64_t>(whole.size()), int64_t{1} << 40}) {
    for (const size_t piece : {size_t{1}, size_t{100}, size_t{1} << 16}) {
      const auto ids = tok_->encode_prefix(text, cap, piece);
      const size_t n = std::min<size_t>(whole.size(), static_cast<size_t>(cap));
      ASSERT_GE(ids.size(), n) << "cap " << cap << ", pieces of " << piece;
      EXPECT_TRUE(std::equal(ids.begin(), ids.end(), whole.begin())) << "cap " << cap << ", pieces of " << piece;
      if (piece == 100 && cap == 57) EXPECT_LT(ids.size(), whole.size() / 2) << "encoded past the cap";
    }
  }
  EXPECT_EQ(tok_->encode_prefix(text, -1), whole);
  EXPECT_EQ(streamsink::newline_piece_end("ab\ncd\nef", 0, 1), 3u);
  EXPECT_EQ(streamsink::newline_piece_end("ab\ncd\nef", 0, 4), 6u);
  EXPECT_EQ(streamsink::newline_piece_end("ab\ncd\nef", 6, 1), 8u);  // no newline left: the end
  EXPECT_EQ(streamsink::newline_piece_end("ab\ncd\nef", 0, 8), 8u);  // at most min_bytes left: the end
}

TEST_F(TokenizerTest, EncodeIsThreadSafe) {
  const std::string text = read_text(corpus_dir() + "/streaming.txt");
  const auto expected = tok_->encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 20; ++r) got[t] = tok_->encode(text);
    });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  expect_error([&] { tok_->decode({5, 1000}); }, {"tok.model", "1000"});
  expect_error([&] { tok_->decode({-1}); }, {"tok.model", "-1"});
}

TEST_F(TokenizerTest, ChecksumIsOfTheFileBytes) {
  const std::string path = tok_->path();
  EXPECT_EQ(tok_->checksum().size(), 16u);
  EXPECT_EQ(tok_->checksum(), streamsink::fnv1a64_hex(read_text(path)));
  EXPECT_EQ(Tokenizer::load(path).checksum(), tok_->checksum());
  // FNV-1a 64 reference values.
  EXPECT_EQ(streamsink::fnv1a64_hex(""), "cbf29ce484222325");
  EXPECT_EQ(streamsink::fnv1a64_hex("a"), "af63dc4c8601ec8c");
}

TEST(TokenizerLoad, MissingAndGarbageFiles) {
  TempDir dir;
  const std::string missing = (dir.path() / "missing.model").string();
  expect_error([&] { Tokenizer::load(missing); }, {missing, "no such file"});
  const std::string garbage = (dir.path() / "garbage.model").string();
  std::ofstream(garbage) << "this is not a protobuf \xff\xff\xff\xff\x01\x02";
  expect_error([&] { Tokenizer::load(garbage); }, {garbage, "not a sentencepiece model"});
  const std::string empty = (dir.path() / "empty.model").string();
  std::ofstream(empty).flush();
  expect_error([&] { Tokenizer::load(empty); }, {empty, "empty"});
}

TEST(TokenizerTrain, BadConfigsAreErrors) {
  TempDir dir;
  streamsink::TokenizerTrainConfig cfg;
  cfg.inputs = {corpus_dir()};
  cfg.out = (dir.path() / "t.model").string();
  cfg.vocab_size = 100;
  expect_error([&] { streamsink::train_tokenizer(cfg); }, {"t.model", "too small"});
  cfg.vocab_size = 1000;
  cfg.inputs = {(dir.path() / "nowhere").string()};
  expect_error([&] { streamsink::train_tokenizer(cfg); }, {"nowhere", "no such file"});
  EXPECT_FALSE(fs::exists(cfg.out));
}

// Issue 4: "progress shown". sentencepiece gives no progress callback, so a thread reports the reading and then the
// building of the pieces at --progress-every; the counts it prints are the corpus's (5 files, 76 non-empty lines).
TEST(TokenizerTrain, ProgressLinesComeWhileTraining) {
  TempDir dir;
  const std::string base = "tokenizer train --input " + corpus_dir() + " --vocab-size 1000 --threads 1 --out ";
  auto r = streamsink::testing::run_streamsink(base + (dir.path() / "a.model").string() + " --progress-every 0.001");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("s: read 5 of 5 files, 76 lines; sentencepiece is building the pieces"), std::string::npos)
      << r.output;
  r = streamsink::testing::run_streamsink(base + (dir.path() / "b.model").string() + " --progress-every 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("s: read"), std::string::npos) << r.output;
}

// A model file that cannot be written whole (a file-size limit stands in for a full disk) is an error naming it, and
// leaves neither the model nor its temporary file (before session 8 the temporary `t.model.tmp.PID` stayed).
TEST(TokenizerTrain, AFailedWriteLeavesNoModelAndNoTemporaryFile) {
  TempDir dir;
  streamsink::TokenizerTrainConfig cfg;
  cfg.inputs = {corpus_dir()};
  cfg.out = (dir.path() / "t.model").string();
  cfg.vocab_size = 1000;
  cfg.num_threads = 2;
  {
    streamsink::testing::ScopedFileSizeLimit limit(1024);
    expect_error([&] { streamsink::train_tokenizer(cfg); }, {cfg.out, "failed"});
  }
  EXPECT_TRUE(streamsink::testing::entries(dir.path()).empty());
}
