// ctest-labels: integration
// scripts/experiments/make_corpus.py (the GPU lease's corpus from the machine's own text) against a folder whose
// answer is known by construction: which files are kept, dropped as duplicates, as not text, as out of size, or
// never looked at; the kept documents byte for byte; the cap; a fixed order; clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "tests/helpers.h"

using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string text(char c, size_t n) {  // n bytes of printable lines
  std::string s;
  while (s.size() < n) s += std::string(40, c) + "\n";
  return s.substr(0, n);
}

RunResult make_corpus(const std::string& args) {
  return run_shell("'" + venv_python() + "' " + source_dir() + "/scripts/experiments/make_corpus.py " + args);
}

std::multiset<std::string> contents(const fs::path& dir) {
  std::multiset<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), ".txt");
    out.insert(streamsink::read_file(e.path().string()));
  }
  return out;
}

class MakeCorpus : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(venv_python())) GTEST_SKIP() << "no Python at " << venv_python() << " (run scripts/setup.sh)";
    const fs::path s = dir_.path() / "src";
    write(s / "pkg/a.py", a_);
    write(s / "pkg/copy_of_a.md", a_);                      // a duplicate by content
    write(s / "pkg/c.txt", c_);
    write(s / "deep/er/g.rst", g_);
    write(s / "pkg/nul.py", text('n', 2000) + std::string(1, '\0'));  // not text: a NUL byte
    write(s / "pkg/latin1.py", text('l', 2000) + "\xe9\xe8\n");     // not text: not UTF-8
    write(s / "pkg/small.py", text('s', 100));               // under --min-bytes
    write(s / "pkg/big.txt", text('b', 3 * 1024 * 1024));    // over --max-bytes
    write(s / "pkg/image.png", text('p', 5000));             // an ending not asked for: never looked at
    fs::create_symlink(s / "pkg/c.txt", s / "pkg/link.py");  // a link: not followed
  }
  TempDir dir_;
  const std::string a_ = text('a', 2000), c_ = text('c', 3000), g_ = text('g', 4000);
};

}  // namespace

TEST_F(MakeCorpus, KeepsEachTextDocumentOnceAndCountsEveryOtherFile) {
  const auto r = make_corpus((dir_.path() / "src").string() + " --out " + dir_.str() + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(contents(dir_.path() / "out"), (std::multiset<std::string>{a_, c_, g_}));
  EXPECT_NE(r.output.find("corpus: files=3 bytes=9000 duplicates=1 not_text=2 out_of_size=2 scanned=8 "),
            std::string::npos)
      << r.output;
}

TEST_F(MakeCorpus, StopsAtTheCapInAFixedOrder) {
  // 0.0045 MiB = 4718 bytes: room for one or two of the 2000-, 3000- and 4000-byte documents, never more.
  const std::string src = (dir_.path() / "src").string();
  const auto r1 = make_corpus(src + " --cap-mb 0.0045 --out " + dir_.str() + "/one");
  const auto r2 = make_corpus(src + " --cap-mb 0.0045 --out " + dir_.str() + "/two");
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto one = contents(dir_.path() / "one");
  size_t bytes = 0;
  for (const auto& d : one) bytes += d.size();
  EXPECT_GE(one.size(), 1u);
  EXPECT_LE(bytes, 4718u);
  EXPECT_EQ(one, contents(dir_.path() / "two"));
}

TEST_F(MakeCorpus, BadInputIsAClearError) {
  auto r = make_corpus(dir_.str() + "/missing --out " + dir_.str() + "/out");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("missing: not a folder"), std::string::npos) << r.output;

  write(dir_.path() / "full/x.txt", "x");
  r = make_corpus((dir_.path() / "src").string() + " --out " + dir_.str() + "/full");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("full: not empty"), std::string::npos) << r.output;

  r = make_corpus((dir_.path() / "src").string() + " --ext .nothing --out " + dir_.str() + "/none");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no text file found"), std::string::npos) << r.output;
}

// The order is fixed by the SHA-1 of each file's path below its SRC folder, whatever the folder's place, name or
// listing: twelve 1100-byte documents, written in opposite orders into two trees at different depths, with a cap of
// 0.0055 MiB = 5767 bytes (five of them, not six). Both corpora hold exactly the five whose relative paths hash
// lowest (by sha1sum).
TEST_F(MakeCorpus, TheCapKeepsTheFirstDocumentsByTheHashOfTheirRelativePath) {
  std::vector<std::string> rel;
  for (int i = 0; i < 12; ++i) rel.push_back("d" + std::to_string(i % 3) + "/f" + std::to_string(i) + ".txt");
  const auto doc = [](size_t i) { return text(static_cast<char>('a' + i), 1099) + "\n"; };
  const fs::path one = dir_.path() / "one", two = dir_.path() / "deeper/place/two";
  for (size_t i = 0; i < rel.size(); ++i) write(one / rel[i], doc(i));
  for (size_t i = rel.size(); i-- > 0;) write(two / rel[i], doc(i));
  std::vector<std::pair<std::string, size_t>> by_hash;
  for (size_t i = 0; i < rel.size(); ++i) {
    const auto h = run_shell("printf %s '" + rel[i] + "' | sha1sum");
    ASSERT_EQ(h.exit_code, 0) << h.output;
    by_hash.emplace_back(h.output.substr(0, 40), i);
  }
  std::sort(by_hash.begin(), by_hash.end());
  std::multiset<std::string> want;
  for (size_t k = 0; k < 5; ++k) want.insert(doc(by_hash[k].second));
  for (const fs::path& src : {one, two}) {
    const std::string out = (src.parent_path() / (src.filename().string() + "-out")).string();
    const auto r = make_corpus(src.string() + " --cap-mb 0.0055 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("corpus: files=5 bytes=5500 "), std::string::npos) << r.output;
    EXPECT_EQ(contents(out), want) << src;
  }
}
