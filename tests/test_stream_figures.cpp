// ctest-labels: integration slow
// Rehearses scripts/experiments/figure3.sh (the paper's Figure 3: perplexity along a held-out stream for every
// cache) and long_stream.sh (one stream through the streaming cache) at toy size, on two 4-step tiny runs (none and
// token) over the fixture corpus. Oracles: every CSV row's perplexity is exp(mean NLL) of the per-token file that
// eval-stream wrote for that cache, over the tokens the row says; the plots are PNG images; the long stream has the
// length asked for and every token after the first scored.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "tests/corpus_fixture.h"

using namespace streamsink::testing;

namespace {

// A PNG file: the 8-byte signature, then an IHDR chunk with a positive width and height.
void expect_png(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(f) << path;
  unsigned char h[24] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  ASSERT_EQ(f.gcount(), 24) << path;
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h), 8), std::string(reinterpret_cast<const char*>(sig), 8)) << path;
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h + 12), 4), "IHDR") << path;
  const auto be32 = [&](int at) { return (h[at] << 24) | (h[at + 1] << 16) | (h[at + 2] << 8) | h[at + 3]; };
  EXPECT_GT(be32(16), 0) << path;
  EXPECT_GT(be32(20), 0) << path;
}

// The NLL of every scored token of an eval-stream --out file, by stream index.
std::map<int64_t, double> nll_by_index(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    out[j["i"].get<int64_t>()] = j["nll"].get<double>();
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string f; std::getline(ss, f, sep);) out.push_back(f);
  return out;
}

int run_script(const std::string& env, const std::string& script, const std::string& log) {
  const std::string cmd = "OMP_NUM_THREADS=1 " + env + " STREAMSINK_BIN=" + streamsink_binary() + " bash " +
                          source_dir() + "/scripts/experiments/" + script + " > " + log + " 2>&1";
  return std::system(cmd.c_str());
}

}  // namespace

TEST(StreamFigureScripts, Figure3AndLongStreamWriteWhatTheirRunsMeasured) {
  TempDir dir;
  const std::string runs = dir.str() + "/runs", data = prepared_corpus();
  for (const std::string v : {"none", "token"}) {
    auto r = run_streamsink(tiny_train_args(runs + "/" + v, "--set model.sink=" + v +
                                                                " --set train.steps=4 --set train.eval_interval=0"
                                                                " --set train.checkpoint_interval=0 --set train.threads=1"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // Figure 3: 300 tokens (100 under recompute), W = half tiny's context of 64.
  const std::string f3 = dir.str() + "/f3", results = dir.str() + "/results", log = dir.str() + "/f3.log";
  int rc = run_script("RUNS=" + runs + " DATA=" + data + " TOKENS=300 RECOMPUTE_TOKENS=100 OUT=" + f3 +
                          " RESULTS=" + results,
                      "figure3.sh", log);
  ASSERT_EQ(rc, 0) << streamsink::read_file(log);
  expect_png(results + "/figure3_none.png");
  expect_png(results + "/figure3_token.png");
  const std::string md = streamsink::read_file(results + "/figure3.md");
  for (const char* want : {"| model | streaming 1+31 | streaming 4+28 | dense (0+300) | recompute (0+32) | "
                           "recompute (1+31) | window (0+32) |",
                           "| vanilla |", "| learnable sink token |"})
    EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;

  std::istringstream csv(streamsink::read_file(results + "/figure3.csv"));
  std::string line;
  auto next_row = [&] {  // Python's csv ends rows with \r\n
    if (!std::getline(csv, line)) return false;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  };
  next_row();
  ASSERT_EQ(line, "variant,sinks,window,seed,ppl,policy,tokens,tokens_per_s,common_tokens,ppl_common");
  int rows = 0;
  while (next_row()) {
    if (line.empty()) continue;
    ++rows;
    const auto f = split(line, ',');
    ASSERT_EQ(f.size(), 10u) << line;
    const std::string file = f3 + "/" + f[0] + "__" + f[5] + "_" + f[1] + "+" + f[2] + ".nll.jsonl";
    const auto nll = nll_by_index(file);
    const int64_t tokens = std::stoll(f[6]), common = std::stoll(f[8]);
    ASSERT_EQ(static_cast<int64_t>(nll.size()), tokens - 1) << file << ": every token after the first is scored";
    auto ppl_of_first = [&](int64_t n) {  // over stream tokens 1..n-1, the scored ones among the first n
      double sum = 0;
      int64_t k = 0;
      for (const auto& [i, x] : nll)
        if (i < n) sum += x, ++k;
      return std::exp(sum / static_cast<double>(k));
    };
    EXPECT_NEAR(std::stod(f[4]), ppl_of_first(tokens), 1e-3 * std::stod(f[4])) << line;
    EXPECT_NEAR(std::stod(f[9]), ppl_of_first(common), 1e-3 * std::stod(f[9])) << line;
  }
  EXPECT_EQ(rows, 2 * 6) << "a row per variant and cache";

  // The long stream: the held-out splits repeated to 3000 tokens, through 4+28.
  const std::string ls = dir.str() + "/ls", ls_log = dir.str() + "/ls.log";
  rc = run_script("RUN=" + runs + "/token DATA=" + data + " TOKENS=3000 OUT=" + ls + " RESULTS=" + results,
                  "long_stream.sh", ls_log);
  const std::string out = streamsink::read_file(ls_log);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("stream: 3000 tokens"), std::string::npos) << out;
  expect_png(results + "/long_stream.png");
  EXPECT_EQ(nll_by_index(ls + "/streaming_4+28.nll.jsonl").size(), 2999u);
}
