// data/prepare.* and data/corpus.*: shards equal the per-document encodings (+ <eos>), manifest figures equal the
// shards, reruns are byte-identical, adding a file moves no other document, exact copies are dropped, plus the CLI
// and its errors.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sentencepiece_trainer.h>

#include "common/error.h"
#include "common/file_util.h"
#include "data/corpus.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using streamsink::Error;
using streamsink::PrepareConfig;
using streamsink::Tokenizer;
using streamsink::testing::run_streamsink;
using streamsink::testing::TempDir;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

// Every file of a directory, name -> bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(dir)) m[e.path().filename().string()] = read_bytes(e.path());
  return m;
}

// A corpus of tests/data (one file gzipped), 30 extra one-paragraph documents (some .gz), and a binary file.
void make_corpus(const fs::path& root) {
  const fs::path src = fs::path(streamsink::testing::source_dir()) / "tests/data/corpus";
  fs::copy(src, root, fs::copy_options::recursive);
  write_gz(root / "streaming.txt.gz", read_bytes(root / "streaming.txt"));
  fs::remove(root / "streaming.txt");
  const std::string lines = read_bytes(src / "streaming.txt");
  for (int i = 0; i < 30; ++i) {
    const std::string text = "Document " + std::to_string(i) + ": " + lines.substr(static_cast<size_t>(i) * 40, 200);
    const fs::path p = root / "gen" / ("doc_" + std::to_string(i) + ".txt");
    fs::create_directories(p.parent_path());
    if (i % 3 == 0) write_gz(p.string() + ".gz", text); else write_bytes(p, text);
  }
  std::string binary = "\x89PNG\r\n\x1a\n";
  binary += std::string(64, '\0') + "IHDR";
  write_bytes(root / "image.png", binary);
  write_bytes(root / ".hidden" / "skip.txt", "hidden files are not documents");
}

struct Encoded {
  std::string relpath;
  std::vector<int32_t> ids;  // encode(text) + <eos>
};

// The oracle: every text document's encoding followed by <eos>.
std::vector<Encoded> encode_corpus(const Tokenizer& tok, const std::string& root) {
  std::vector<Encoded> out;
  for (const auto& d : streamsink::find_documents({root})) {
    std::string text;
    if (!streamsink::read_document(d.path, &text)) continue;
    auto ids = tok.encode(text);
    ids.push_back(tok.eos_id());
    out.push_back({d.relpath, ids});
  }
  return out;
}

// Which split each document landed in, found by walking the split streams in document order; fails the test
// unless every stream is exactly a concatenation of whole encoded documents and every document is used once.
std::map<std::string, int> assign_docs(const std::vector<Encoded>& docs, const std::string& out) {
  std::vector<int32_t> streams[3];
  size_t pos[3] = {0, 0, 0};
  for (int s = 0; s < 3; ++s) streams[s] = streamsink::read_split_tokens(out, streamsink::kSplitNames[s]);
  std::map<std::string, int> where;
  for (const auto& d : docs) {
    for (int s = 0; s < 3; ++s) {
      const auto& st = streams[s];
      if (pos[s] + d.ids.size() <= st.size() &&
          std::equal(d.ids.begin(), d.ids.end(), st.begin() + static_cast<std::ptrdiff_t>(pos[s]))) {
        where[d.relpath] = s;
        pos[s] += d.ids.size();
        break;
      }
    }
    EXPECT_TRUE(where.count(d.relpath)) << d.relpath << " is in no split stream";
  }
  for (int s = 0; s < 3; ++s) EXPECT_EQ(pos[s], streams[s].size()) << "stray tokens in " << streamsink::kSplitNames[s];
  return where;
}

class PrepareTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    make_corpus(dir_->path() / "corpus");
    streamsink::TokenizerTrainConfig cfg;
    cfg.inputs = {(dir_->path() / "corpus").string()};
    cfg.vocab_size = 1000;
    cfg.out = (dir_->path() / "tok.model").string();
    streamsink::train_tokenizer(cfg);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string corpus() { return (dir_->path() / "corpus").string(); }
  static std::string tokenizer() { return (dir_->path() / "tok.model").string(); }
  PrepareConfig config(const std::string& out) const {
    PrepareConfig c;
    c.tokenizer = tokenizer();
    c.inputs = {corpus()};
    c.out = out;
    c.val_fraction = 0.15;
    c.test_fraction = 0.15;
    c.shard_tokens = 700;  // several shards per split
    c.chunk_bytes = 64;    // exercise the cut-after-newline encoding of big documents
    c.num_threads = 2;
    return c;
  }
  static TempDir* dir_;
  TempDir work_;
};
TempDir* PrepareTest::dir_ = nullptr;

}  // namespace

TEST_F(PrepareTest, ShardsHoldEachDocumentEncodedPlusEos) {
  const std::string out = (work_.path() / "out").string();
  const auto stats = streamsink::prepare_data(config(out));
  const Tokenizer tok = Tokenizer::load(tokenizer());
  const auto docs = encode_corpus(tok, corpus());
  ASSERT_EQ(docs.size(), 35u);  // 5 of tests/data + 30 generated; the PNG and the hidden file are not documents
  const auto where = assign_docs(docs, out);

  const auto m = streamsink::read_manifest(out);
  EXPECT_EQ(m.tokenizer_checksum, tok.checksum());
  EXPECT_EQ(m.vocab_size, 1000);
  EXPECT_EQ(m.dtype, "u16");
  EXPECT_NO_THROW(streamsink::verify_data_dir(m));
  int64_t docs_by_split[3] = {0, 0, 0};
  for (const auto& [rel, s] : where) ++docs_by_split[s];
  for (int s = 0; s < 3; ++s) {
    const auto stream = streamsink::read_split_tokens(out, streamsink::kSplitNames[s]);
    EXPECT_EQ(m.tokens[s], static_cast<int64_t>(stream.size()));
    EXPECT_EQ(stats.tokens[s], m.tokens[s]);
    EXPECT_EQ(m.docs[s], docs_by_split[s]);
    EXPECT_EQ(stats.docs[s], m.docs[s]);
    EXPECT_GT(m.docs[s], 0) << streamsink::kSplitNames[s] << " is empty";
    EXPECT_EQ(m.shards[s].size(), streamsink::list_shards(out, streamsink::kSplitNames[s]).size());
  }
  EXPECT_GT(m.shards[0].size(), 1u);
  const auto j = nlohmann::json::parse(read_bytes(fs::path(out) / "manifest.json"));
  EXPECT_EQ(j["skipped_binary_files"], 1);
  // the tokenizer travels with its data (train puts it into every checkpoint): a byte-identical copy
  EXPECT_EQ(read_bytes(fs::path(out) / "tokenizer.model"), read_bytes(tokenizer()));
}

TEST_F(PrepareTest, RerunIsByteIdenticalWhateverTheThreads) {
  const std::string a = (work_.path() / "a").string(), b = (work_.path() / "b").string();
  auto ca = config(a);
  streamsink::prepare_data(ca);
  const auto first = snapshot(a);
  streamsink::prepare_data(ca);
  EXPECT_EQ(snapshot(a), first);
  auto cb = config(b);
  cb.num_threads = 1;
  cb.chunk_bytes = 1 << 20;  // no cutting at all: the same ids
  streamsink::prepare_data(cb);
  const auto second = snapshot(b);
  ASSERT_EQ(first.size(), second.size());
  for (const auto& [name, bytes] : first)
    if (name != "manifest.json") EXPECT_EQ(second.at(name), bytes) << name;
}

TEST_F(PrepareTest, AddingAFileMovesNoOtherDocument) {
  const Tokenizer tok = Tokenizer::load(tokenizer());
  const std::string before = (work_.path() / "before").string(), after = (work_.path() / "after").string();
  streamsink::prepare_data(config(before));
  const auto w0 = assign_docs(encode_corpus(tok, corpus()), before);

  // A second root holding a copy of the corpus plus new files.
  const fs::path grown = work_.path() / "grown";
  fs::copy(corpus(), grown, fs::copy_options::recursive);
  for (int i = 0; i < 5; ++i) write_bytes(grown / "gen" / ("new_" + std::to_string(i) + ".txt"), "new text " + std::to_string(i));
  auto c = config(after);
  c.inputs = {grown.string()};
  streamsink::prepare_data(c);
  const auto w1 = assign_docs(encode_corpus(tok, grown.string()), after);
  EXPECT_EQ(w1.size(), w0.size() + 5);
  for (const auto& [rel, s] : w0) EXPECT_EQ(w1.at(rel), s) << rel << " moved";
}

// Split by document with unequal fractions (every other test asks for val = test): each document lands in the
// split its hash point says, [0, val) val, [val, val + test) test, the rest train.
TEST_F(PrepareTest, EachDocumentLandsInTheSplitItsHashPointPicksWithUnequalFractions) {
  const Tokenizer tok = Tokenizer::load(tokenizer());
  const std::string out = (work_.path() / "out").string();
  auto c = config(out);
  c.val_fraction = 0.1;
  c.test_fraction = 0.35;
  streamsink::prepare_data(c);
  const auto where = assign_docs(encode_corpus(tok, corpus()), out);
  int64_t count[3] = {0, 0, 0};
  for (const auto& [rel, s] : where) ++count[s];
  ASSERT_GT(count[1], 0);  // no split was empty, so no document was moved to fill one
  ASSERT_GT(count[2], 0);
  for (const auto& [rel, s] : where) {
    const double u = streamsink::split_point(rel);
    EXPECT_EQ(s, u < 0.1 ? 1 : u < 0.45 ? 2 : 0) << rel << " (hash point " << u << ")";
  }
}

TEST(Split, ByHashFollowsTheHashPointAndTheFractions) {
  int64_t count[3] = {0, 0, 0};
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const std::string rel = "dir" + std::to_string(i % 7) + "/doc_" + std::to_string(i) + ".txt";
    const double u = streamsink::split_point(rel);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    const int s = streamsink::split_by_hash(rel, 0.05, 0.25);
    EXPECT_EQ(s, u < 0.05 ? 1 : u < 0.30 ? 2 : 0) << rel;
    EXPECT_EQ(streamsink::split_by_hash(rel, 0.05, 0.25), s) << "not deterministic";
    ++count[s];
  }
  EXPECT_NEAR(count[1] / double(n), 0.05, 0.015);
  EXPECT_NEAR(count[2] / double(n), 0.25, 0.03);
  EXPECT_NEAR(count[0] / double(n), 0.70, 0.03);
}

TEST_F(PrepareTest, SmallCorpusStillGetsValAndTest) {
  const fs::path small = work_.path() / "small";
  for (int i = 0; i < 3; ++i) write_bytes(small / ("d" + std::to_string(i) + ".txt"), "document number " + std::to_string(i));
  auto c = config((work_.path() / "out").string());
  c.inputs = {small.string()};
  c.val_fraction = c.test_fraction = 0.001;
  const auto stats = streamsink::prepare_data(c);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(stats.docs[s], 1) << streamsink::kSplitNames[s];
  // Asked for no val and no test: none are forced.
  c.val_fraction = c.test_fraction = 0.0;
  const auto none = streamsink::prepare_data(c);
  EXPECT_EQ(none.docs[0], 3);
  EXPECT_EQ(none.docs[1] + none.docs[2], 0);
  EXPECT_THROW(streamsink::list_shards(c.out, "val"), Error);  // the earlier run's val shard is gone too
}

TEST_F(PrepareTest, RerunWithBiggerShardsRemovesStaleOnes) {
  const std::string out = (work_.path() / "out").string();
  streamsink::prepare_data(config(out));
  auto c = config(out);
  c.shard_tokens = 1'000'000;
  streamsink::prepare_data(c);
  for (const char* split : streamsink::kSplitNames) EXPECT_EQ(streamsink::list_shards(out, split).size(), 1u);
  EXPECT_NO_THROW(streamsink::verify_data_dir(streamsink::read_manifest(out)));
}

TEST_F(PrepareTest, Errors) {
  auto c = config((work_.path() / "out").string());
  c.inputs = {(work_.path() / "missing").string()};
  EXPECT_THROW(streamsink::prepare_data(c), Error);
  const std::string garbage = (work_.path() / "garbage.model").string();
  write_bytes(garbage, "not a model at all");
  c = config((work_.path() / "out").string());
  c.tokenizer = garbage;
  try {
    streamsink::prepare_data(c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(garbage), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(work_.path() / "out"));  // a refused command leaves nothing behind
}

// An output folder inside the input folder holds the shards, the manifest and, while a run writes, its marker: none is
// a document (review, session 16: a rerun read the first run's manifest as text, removed it, then failed reading it).
TEST_F(PrepareTest, AnOutputFolderInsideTheInputIsNotReadAsDocuments) {
  const fs::path in = work_.path() / "corpus";
  fs::copy(corpus(), in, fs::copy_options::recursive);
  auto c = config((in / "data").string());
  c.inputs = {in.string()};
  streamsink::prepare_data(c);
  const auto first = streamsink::read_manifest(c.out);
  c.out += "/";  // the same folder, named another way
  streamsink::prepare_data(c);
  const auto second = streamsink::read_manifest(c.out);
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(second.docs[s], first.docs[s]) << streamsink::kSplitNames[s];
    EXPECT_EQ(second.tokens[s], first.tokens[s]) << streamsink::kSplitNames[s];
  }
  EXPECT_NO_THROW(streamsink::verify_data_dir(second));
  EXPECT_FALSE(fs::exists(in / "data" / streamsink::kPrepareIncomplete));
  // The other way round, an input inside the output folder (--input data/raw --out data), stays an input, whole.
  auto c2 = config((work_.path() / "data").string());
  fs::create_directories(work_.path() / "data");
  fs::copy(corpus(), work_.path() / "data" / "raw", fs::copy_options::recursive);
  c2.inputs = {(work_.path() / "data" / "raw").string()};
  streamsink::prepare_data(c2);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(streamsink::read_manifest(c2.out).docs[s], first.docs[s]);
  EXPECT_EQ(std::string(streamsink::kPrepareIncomplete), "prepare.incomplete");  // the name prepare skips
}

// prepare ends every document with </s>: a tokenizer without one is refused before any work, naming it (review,
// session 16: it appended id -1 and failed at the first shard's flush, with "token id -1 does not fit u16 shards").
TEST_F(PrepareTest, ATokenizerWithoutEosIsRefusedBeforeAnyWork) {
  const std::string prefix = (work_.path() / "no_eos").string();
  const auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + streamsink::testing::source_dir() + "/tests/data/corpus/streaming.txt --model_prefix=" + prefix +
      " --vocab_size=1000 --model_type=bpe --byte_fallback=true --eos_id=-1 --minloglevel=2");
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_LT(Tokenizer::load(prefix + ".model").eos_id(), 0);
  auto c = config((work_.path() / "out").string());
  c.tokenizer = prefix + ".model";
  streamsink::testing::expect_error([&] { streamsink::prepare_data(c); }, {c.tokenizer, "</s>"});
  EXPECT_FALSE(fs::exists(c.out));
}

// The readers take every shard in the folder, so `data inspect` (verify_data_dir) names one the manifest does not list.
TEST_F(PrepareTest, VerifyNamesAShardTheManifestDoesNotList) {
  const std::string out = (work_.path() / "out").string();
  streamsink::prepare_data(config(out));
  const std::string extra = streamsink::shard_path(out, "val", 99);
  fs::copy_file(streamsink::shard_path(out, "val", 0), extra);
  streamsink::testing::expect_error([&] { streamsink::verify_data_dir(streamsink::read_manifest(out)); },
                                    {extra, "is not in", "manifest.json"});
}

TEST_F(PrepareTest, ManifestChecksumMismatchNamesBothFiles) {
  const std::string out = (work_.path() / "out").string();
  streamsink::prepare_data(config(out));
  // Another tokenizer: same text, other vocabulary size.
  streamsink::TokenizerTrainConfig tc;
  tc.inputs = {corpus()};
  tc.vocab_size = 900;
  tc.out = (work_.path() / "other.model").string();
  streamsink::train_tokenizer(tc);
  const auto m = streamsink::read_manifest(out);
  try {
    streamsink::check_manifest_tokenizer(m, tc.out);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(tc.out), std::string::npos) << msg;
    EXPECT_NE(msg.find(fs::path(tokenizer()).filename().string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("manifest.json"), std::string::npos) << msg;
  }
  const auto r = run_streamsink("data inspect " + out + " --tokenizer " + tc.out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("other.model"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tok.model"), std::string::npos) << r.output;
}

TEST_F(PrepareTest, CommandLine) {
  const std::string out = (work_.path() / "cli").string();
  const std::string tok = (work_.path() / "cli.model").string();
  auto r = run_streamsink("tokenizer train --input " + corpus() + " --vocab-size 1000 --out " + tok);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 sink ids from 4"), std::string::npos) << r.output;
  r = run_streamsink("data prepare --tokenizer " + tok + " --input " + corpus() + " --out " + out +
                     " --val-fraction 0.1 --test-fraction 0.1 --shard-tokens 1000 --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  r = run_streamsink("data inspect " + out + " --tokenizer " + tok + " --show 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("magic 20240520"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decoded:"), std::string::npos) << r.output;

  // A truncated shard: inspect names it and the problem.
  const std::string shard = out + "/train_000000.bin";
  const std::string bytes = read_bytes(shard);
  write_bytes(shard, bytes.substr(0, bytes.size() - 2));
  r = run_streamsink("data inspect " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("train_000000.bin: truncated"), std::string::npos) << r.output;
  r = run_streamsink("data inspect " + shard);
  EXPECT_EQ(r.exit_code, 1) << r.output;

  r = run_streamsink("data prepare --tokenizer " + tok + " --input " + out + "/nope --out " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("nope: no such file or directory"), std::string::npos) << r.output;
  r = run_streamsink("tokenizer train --input " + corpus() + " --vocab-size 1000");
  EXPECT_NE(r.exit_code, 0);  // --out is required
  r = run_streamsink("data");
  EXPECT_NE(r.exit_code, 0);  // a subcommand is required
}

TEST(Corpus, BinaryDetection) {
  EXPECT_FALSE(streamsink::looks_binary("plain text\nwith lines\n"));
  EXPECT_FALSE(streamsink::looks_binary("Größe 中文 \xE2\x82\xAC"));
  EXPECT_FALSE(streamsink::looks_binary("latin-1 caf\xe9 once"));
  EXPECT_TRUE(streamsink::looks_binary(std::string("ab\0cd", 5)));
  EXPECT_TRUE(streamsink::looks_binary("\xff\xfe\xfd\xfc\xfb\xfa\xf9"));
}

// A gzip file cut short (a partial download or copy) is an error naming it, not a document silently cut at the
// break; the whole file reads back as written.
TEST(Corpus, ATruncatedGzipFileIsAnErrorNamingIt) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 4000; ++i) text += "line " + std::to_string(i) + " of a document that compresses well\n";
  const fs::path whole = dir.path() / "whole.txt.gz", cut = dir.path() / "cut.txt.gz";
  write_gz(whole, text);
  const std::string bytes = read_bytes(whole);
  write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  std::string got;
  ASSERT_TRUE(streamsink::read_document(whole.string(), &got));
  EXPECT_EQ(got, text);
  try {
    streamsink::read_document(cut.string(), &got);
    ADD_FAILURE() << "a truncated .gz was read as " << got.size() << " bytes of text";
  } catch (const streamsink::Error& e) {
    EXPECT_NE(std::string(e.what()).find(cut.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated or corrupt"), std::string::npos) << e.what();
  }
}

// A rerun into a prepared folder that fails part-way (here: a truncated .gz among the inputs) leaves no manifest: the
// earlier run's would vouch for a mix of its shards and the new ones.
TEST_F(PrepareTest, AFailedRerunLeavesNoManifestBehind) {
  const std::string out = (work_.path() / "out").string();
  streamsink::prepare_data(config(out));
  ASSERT_TRUE(fs::exists(fs::path(out) / "manifest.json"));
  const fs::path inputs = work_.path() / "inputs";
  fs::create_directories(inputs);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "more text " + std::to_string(i) + "\n";
  write_gz(inputs / "whole.txt.gz", text);
  const std::string bytes = read_bytes(inputs / "whole.txt.gz");
  write_bytes(inputs / "cut.txt.gz", bytes.substr(0, bytes.size() / 2));
  auto c = config(out);
  c.inputs = {corpus(), inputs.string()};
  EXPECT_THROW(streamsink::prepare_data(c), Error);
  EXPECT_FALSE(fs::exists(fs::path(out) / "manifest.json"));
  // ...and the readers refuse the folder (before session 8 they read its mix of old and new shards without a word)
  streamsink::testing::expect_error([&] { streamsink::list_shards(out, "test"); }, {out, "did not finish"});
  streamsink::prepare_data(config(out));  // a run that finishes clears it
  EXPECT_FALSE(streamsink::list_shards(out, "test").empty());
}

// A tokenizer with a dummy prefix (sentencepiece's and Llama's default; `import-hf` brings such models) starts every
// encoded piece with "▁", so a document cut after its newlines would encode to other ids than whole: prepare then
// encodes documents whole, and the shards hold every document's whole encoding (review, session 8: they held the
// pieces' instead).
TEST_F(PrepareTest, ATokenizerWithADummyPrefixEncodesDocumentsWhole) {
  EXPECT_TRUE(Tokenizer::load(tokenizer()).newline_cuts_are_exact());  // `tokenizer train`'s models
  std::string all;
  for (const auto& d : streamsink::find_documents({corpus()})) {
    std::string text;
    if (streamsink::read_document(d.path, &text)) all += text + "\n";
  }
  write_bytes(work_.path() / "all.txt", all);
  const std::string prefix = (work_.path() / "dummy").string();
  const auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + (work_.path() / "all.txt").string() + " --model_prefix=" + prefix +
      " --vocab_size=1000 --model_type=bpe --byte_fallback=true --character_coverage=1.0 --minloglevel=2"
      " --add_dummy_prefix=true --normalization_rule_name=identity --remove_extra_whitespaces=false");  // Llama's
  ASSERT_TRUE(st.ok()) << st.message();
  const Tokenizer dummy = Tokenizer::load(prefix + ".model");
  ASSERT_FALSE(dummy.newline_cuts_are_exact());
  auto c = config((work_.path() / "out").string());
  c.tokenizer = prefix + ".model";  // chunk_bytes stays 64: every multi-line document would be cut
  streamsink::prepare_data(c);
  assign_docs(encode_corpus(dummy, corpus()), c.out);  // fails the test unless each document is whole
}

// Binary files leave before the split, so one can never take val's or test's only place (review, session 8: three
// text files and a binary one gave a test split of 0 documents and no test shard).
TEST_F(PrepareTest, BinaryFilesTakeNoSplitsPlace) {
  const fs::path in = work_.path() / "mixed";
  for (const char* n : {"a.txt", "b.txt", "c.txt"}) write_bytes(in / n, std::string("text of ") + n + "\n");
  std::string junk(3000, '\0');
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 7919) % 251);
  for (const char* n : {"g.bin", "h.bin", "k.bin"}) write_bytes(in / n, junk);
  auto c = config((work_.path() / "out").string());
  c.inputs = {in.string()};
  c.val_fraction = c.test_fraction = 0.3;
  const auto stats = streamsink::prepare_data(c);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(stats.docs[s], 1) << streamsink::kSplitNames[s];
  EXPECT_EQ(nlohmann::json::parse(streamsink::read_file(c.out + "/manifest.json"))["skipped_binary_files"], 3);
  // Nothing but binary files: an error, not an empty data folder.
  c.inputs = {(in / "g.bin").string(), (in / "h.bin").string()};
  streamsink::testing::expect_error([&] { streamsink::prepare_data(c); }, {"none of the 2 files", "is text"});
}

namespace {

// Adds to a copy of the corpus at `root` exact copies of three of its documents under other names, each sorting after
// its original (the one kept) and named so that its own path hash picks another split than the original's (kept, it
// would put the same text in two splits): gen/doc_1.txt twice, gen/doc_2.txt gzipped, gen/doc_3.txt.gz decompressed.
// Returns the number of copies.
int add_copies(const fs::path& root, double val_fraction, double test_fraction) {
  auto other_split_name = [&](const std::string& original, const std::string& file) {
    const int s = streamsink::split_by_hash(original, val_fraction, test_fraction);
    for (int k = 0;; ++k) {
      const std::string rel = "zz_copy_" + std::to_string(k) + "/" + file;
      if (streamsink::split_by_hash(rel, val_fraction, test_fraction) != s && !fs::exists(root / rel)) return rel;
    }
  };
  std::string doc3;
  EXPECT_TRUE(streamsink::read_document((root / "gen/doc_3.txt.gz").string(), &doc3));
  write_bytes(root / other_split_name("gen/doc_1.txt", "doc_1.txt"), read_bytes(root / "gen/doc_1.txt"));
  write_bytes(root / other_split_name("gen/doc_1.txt", "doc_1.txt"), read_bytes(root / "gen/doc_1.txt"));
  const fs::path gz = root / other_split_name("gen/doc_2.txt", "doc_2.txt.gz");
  fs::create_directories(gz.parent_path());
  write_gz(gz, read_bytes(root / "gen/doc_2.txt"));
  write_bytes(root / other_split_name("gen/doc_3.txt.gz", "doc_3.txt"), doc3);
  return 4;
}

}  // namespace

// Exact copies of documents (in another folder, gzipped or not) leave before the split: the shards and the counts
// are those of the corpus without them, and the manifest says how many went. Before, each copy was a document of
// its own, split by its own path: the same text in train and in val or test, and counted twice.
TEST_F(PrepareTest, ExactCopiesAreDroppedAndCounted) {
  const fs::path copies = work_.path() / "copies";
  fs::copy(corpus(), copies, fs::copy_options::recursive);
  auto c = config((work_.path() / "with").string());
  c.inputs = {copies.string()};
  ASSERT_EQ(add_copies(copies, c.val_fraction, c.test_fraction), 4);
  const std::string without = (work_.path() / "without").string();
  streamsink::prepare_data(config(without));
  const auto stats = streamsink::prepare_data(c);
  EXPECT_EQ(stats.duplicate_docs, 4);

  auto a = snapshot(without), b = snapshot(c.out);
  const auto ja = nlohmann::json::parse(a.at("manifest.json")), jb = nlohmann::json::parse(b.at("manifest.json"));
  EXPECT_EQ(ja["splits"], jb["splits"]);  // docs, tokens, shard names and sizes per split
  EXPECT_EQ(ja.value("duplicate_docs", -1), 0);
  EXPECT_EQ(jb.value("duplicate_docs", -1), 4);
  EXPECT_EQ(streamsink::read_manifest(c.out).duplicate_docs, 4);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a)
    if (name != "manifest.json") EXPECT_TRUE(b.count(name) && b.at(name) == bytes) << name << " differs";
  const auto r = run_streamsink("data inspect " + c.out + " --show 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 duplicate docs skipped"), std::string::npos) << r.output;
}

// A manifest written before prepare dropped copies has no "duplicate_docs": it reads as -1 (not looked for: such a
// folder may hold copies), and inspect takes it and says so.
TEST_F(PrepareTest, AManifestWithoutTheDuplicateCountReadsAsNotLookedFor) {
  const std::string out = (work_.path() / "out").string();
  streamsink::prepare_data(config(out));
  const fs::path path = fs::path(out) / "manifest.json";
  auto j = nlohmann::ordered_json::parse(read_bytes(path));
  ASSERT_EQ(j.erase("duplicate_docs"), 1u);
  write_bytes(path, j.dump(2) + "\n");
  const auto m = streamsink::read_manifest(out);
  EXPECT_EQ(m.duplicate_docs, -1);
  EXPECT_EQ(m.docs[0] + m.docs[1] + m.docs[2], 35);
  EXPECT_NO_THROW(streamsink::verify_data_dir(m));
  const auto r = run_streamsink("data inspect " + out + " --show 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("duplicate docs: not looked for"), std::string::npos) << r.output;
  // ...while a count of the wrong type is a malformed manifest, named
  j["duplicate_docs"] = "four";
  write_bytes(path, j.dump(2) + "\n");
  streamsink::testing::expect_error([&] { streamsink::read_manifest(out); }, {path.string(), "malformed"});
}

// The one exception to "adding a file moves no other document" (data/prepare.h): a copy listed before the text it
// copies is the one kept, so the text moves to the copy's split. Shown, so that it is a known rule and not a surprise.
TEST_F(PrepareTest, ACopyListedFirstTakesTheTextToItsOwnSplit) {
  const fs::path copies = work_.path() / "copies";
  fs::copy(corpus(), copies, fs::copy_options::recursive);
  const int from = streamsink::split_by_hash("gen/doc_1.txt", 0.15, 0.15);
  std::string rel;
  for (int k = 0; rel.empty(); ++k)
    if (const std::string r = "aa_copy_" + std::to_string(k) + "/doc_1.txt";
        streamsink::split_by_hash(r, 0.15, 0.15) != from)
      rel = r;
  write_bytes(copies / rel, read_bytes(copies / "gen/doc_1.txt"));
  auto c = config((work_.path() / "with").string());
  c.inputs = {copies.string()};
  const auto before = streamsink::prepare_data(config((work_.path() / "without").string()));
  const auto after = streamsink::prepare_data(c);
  EXPECT_EQ(after.duplicate_docs, 1);
  const int to = streamsink::split_by_hash(rel, 0.15, 0.15);
  EXPECT_EQ(after.docs[from], before.docs[from] - 1) << "the text left " << streamsink::kSplitNames[from];
  EXPECT_EQ(after.docs[to], before.docs[to] + 1) << "the text went to " << streamsink::kSplitNames[to];
  EXPECT_EQ(after.tokens[0] + after.tokens[1] + after.tokens[2], before.tokens[0] + before.tokens[1] + before.tokens[2]);
}

// The copies found, and which of each is kept, do not depend on the thread count: every byte of the output is the
// same with 1 and 3 threads (the manifest records no thread count).
TEST_F(PrepareTest, WithCopiesTheOutputIsByteIdenticalWhateverTheThreads) {
  const fs::path copies = work_.path() / "copies";
  fs::copy(corpus(), copies, fs::copy_options::recursive);
  auto one = config((work_.path() / "one").string()), three = config((work_.path() / "three").string());
  one.inputs = three.inputs = {copies.string()};
  add_copies(copies, one.val_fraction, one.test_fraction);
  one.num_threads = 1;
  three.num_threads = 3;
  EXPECT_EQ(streamsink::prepare_data(one).duplicate_docs, 4);
  EXPECT_EQ(streamsink::prepare_data(three).duplicate_docs, 4);
  const auto a = snapshot(one.out), b = snapshot(three.out);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a) EXPECT_TRUE(b.count(name) && b.at(name) == bytes) << name << " differs";
}

// Only exact copies go: texts one byte apart (same length, or one a prefix of the other) are all kept. Empty files
// stay what they were before copies were dropped, each a document of one <eos> (an empty text leaks nothing).
TEST_F(PrepareTest, NearCopiesAndEmptyFilesAreAllKept) {
  const fs::path in = work_.path() / "near";
  write_bytes(in / "a.txt", "the same text but for one byte\n");
  write_bytes(in / "b.txt", "the same text but for one bytE\n");
  write_bytes(in / "c.txt", "the same text but for one byte\n\n");
  write_bytes(in / "empty1.txt", "");
  write_bytes(in / "sub" / "empty2.txt", "");
  write_gz(in / "sub" / "empty3.txt.gz", "");
  auto c = config((work_.path() / "out").string());
  c.inputs = {in.string()};
  c.val_fraction = c.test_fraction = 0.0;  // all in train: one stream to check
  const auto stats = streamsink::prepare_data(c);
  const Tokenizer tok = Tokenizer::load(tokenizer());
  const auto docs = encode_corpus(tok, in.string());
  ASSERT_EQ(docs.size(), 6u);
  std::vector<int32_t> expected;  // every document's encoding + <eos>, in document order
  for (const auto& d : docs) expected.insert(expected.end(), d.ids.begin(), d.ids.end());
  EXPECT_EQ(streamsink::read_split_tokens(c.out, "train"), expected);
  EXPECT_EQ(stats.docs[0], 6);
  EXPECT_EQ(stats.duplicate_docs, 0);
  EXPECT_EQ(nlohmann::json::parse(streamsink::read_file(c.out + "/manifest.json"))["duplicate_docs"], 0);
}

// A file reached under two names (a symbolic link, inputs that overlap) is one document, kept where it is first met
// (review, session 8: the same text went to train and to test).
TEST(Corpus, AFileReachedTwiceIsOneDocument) {
  TempDir dir;
  const fs::path in = dir.path() / "in";
  write_bytes(in / "y.txt", "the same text\n");
  write_bytes(in / "sub" / "g.txt", "in a sub-folder\n");
  fs::create_symlink("y.txt", in / "x.txt");
  const auto docs = streamsink::find_documents({in.string(), (in / "sub").string()});
  std::vector<std::string> names;
  for (const auto& d : docs) names.push_back(std::to_string(d.input) + ":" + d.relpath);
  EXPECT_EQ(names, (std::vector<std::string>{"0:sub/g.txt", "0:x.txt"}));
}
