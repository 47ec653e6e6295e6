// common/file_util.*: a file or folder is written whole or not at all. The oracle is the folder's listing and the
// bytes on disk after success, after a write that fails part-way (a file-size limit stands in for a full disk), and
// after an object dropped without commit().
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "data/shard.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;
using namespace streamsink;
using namespace streamsink::testing;

namespace {

const std::vector<std::string> kJustTheOldFile = {"f.bin"};

std::string big(size_t n) { return std::string(n, 'x'); }

}  // namespace

TEST(AtomicFile, CommitReplacesTheFileWholeAndLeavesNothingElse) {
  TempDir dir;
  const std::string path = (dir.path() / "f.bin").string();
  write_file_atomic(path, "old");
  write_file_atomic(path, big(100000));
  EXPECT_EQ(read_file(path), big(100000));
  EXPECT_EQ(entries(dir.path()), kJustTheOldFile);
}

TEST(AtomicFile, AWriteThatFailsPartWayNamesTheFileKeepsTheOldOneAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = (dir.path() / "f.bin").string();
  write_file_atomic(path, "old");
  {
    ScopedFileSizeLimit limit(4096);
    expect_error([&] { write_file_atomic(path, big(1 << 20)); }, {path, "failed"});
  }
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(entries(dir.path()), kJustTheOldFile);
}

TEST(AtomicFile, DroppedWithoutCommitLeavesTheOldFileAndNoTemporary) {
  TempDir dir;
  const std::string path = (dir.path() / "f.bin").string();
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write(big(1000));
    EXPECT_EQ(entries(dir.path()).size(), 2u);  // the file and its temporary, while it is written
  }
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(entries(dir.path()), kJustTheOldFile);
}

TEST(AtomicFile, AFolderThatCannotBeWrittenIsNamed) {
  TempDir dir;
  const std::string path = (dir.path() / "absent" / "f.bin").string();
  expect_error([&] { AtomicFile f(path); }, {path, "cannot open for writing"});
}

TEST(StagingDir, CommitMovesTheFolderInPlaceAndADroppedOneLeavesNothing) {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  {
    StagingDir s(out.string(), "test");
    std::ofstream(fs::path(s.path()) / "a.txt") << "a";
  }
  EXPECT_TRUE(entries(dir.path()).empty());
  {
    StagingDir s(out.string(), "test");
    std::ofstream(fs::path(s.path()) / "a.txt") << "a";
    s.commit();
  }
  EXPECT_EQ(entries(dir.path()), std::vector<std::string>{"out"});
  EXPECT_EQ(read_file((out / "a.txt").string()), "a");
  expect_error([&] { StagingDir s(out.string(), "test"); }, {out.string(), "not empty"});
  EXPECT_EQ(read_file((out / "a.txt").string()), "a");
}

// data/shard.cpp writes through AtomicFile: a shard cut short by a full disk never appears under its name.
TEST(AtomicFile, AShardWriteThatFailsLeavesNoShardAndNoTemporary) {
  TempDir dir;
  const std::string path = (dir.path() / "train_000000.bin").string();
  std::vector<int32_t> tokens(100000, 7);
  {
    ScopedFileSizeLimit limit(4096);
    expect_error([&] { write_shard(path, tokens, TokenDtype::kU16); }, {path, "failed"});
  }
  EXPECT_TRUE(entries(dir.path()).empty());
}

// prepare_output_folder (eval-stream's --out, tokenizer train's): a missing folder is made, as mkdir -p; a path that
// names a folder is refused before any folder is made for it; a folder that cannot be made (under a file) is named.
TEST(PrepareOutputFolder, MakesTheFolderOrRefusesBeforeMakingAnything) {
  TempDir dir;
  prepare_output_folder(dir.str() + "/a/b/nll.jsonl", "--out");
  EXPECT_TRUE(fs::is_directory(dir.path() / "a" / "b"));
  EXPECT_FALSE(fs::exists(dir.path() / "a" / "b" / "nll.jsonl"));  // the file is the command's to write
  for (const std::string p : {dir.str() + "/newdir/", dir.str() + "/a"}) {
    try {
      prepare_output_folder(p, "--out");
      ADD_FAILURE() << "expected an error for " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("is a folder; give a file name"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(dir.path() / "newdir")) << "a refused --out made its folder";
  std::ofstream(dir.path() / "afile") << "x";
  try {
    prepare_output_folder(dir.str() + "/afile/sub/nll.jsonl", "--out");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create its folder"), std::string::npos) << e.what();
  }
}
