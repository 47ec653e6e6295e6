// ctest-labels: integration
// scripts/plots/stream_report.py (the streaming table of the demo, Figure 3, Table 3 and the GPU lease) against eval
// folders whose answers are known in closed form: per-token NLLs chosen so that every perplexity is a power of ten.
// A cache run over fewer tokens (recompute, over a prefix) must say so in its column, and the like-for-like table
// must compare every cache over the same first tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <vector>

#include "common/file_util.h"
#include "tests/helpers.h"

using namespace streamsink::testing;

namespace {

// Writes NAME.nll.jsonl (token i scored with nll[i-1], i = 1..n-1) and its summary, as eval-stream does.
void write_run(const std::string& dir, const std::string& name, const std::vector<double>& nll) {
  std::ofstream f(dir + "/" + name + ".nll.jsonl");
  f << std::setprecision(17);
  double sum = 0;
  for (size_t i = 0; i < nll.size(); ++i) {
    f << "{\"i\": " << i + 1 << ", \"token\": 7, \"nll\": " << nll[i] << "}\n";
    sum += nll[i];
  }
  const auto n = static_cast<int64_t>(nll.size()) + 1;
  std::ofstream(dir + "/" + name + ".nll.jsonl.summary.json")
      << std::setprecision(17) << "{\"tokens\": " << n << ", \"ppl\": " << std::exp(sum / nll.size()) << ", \"tokens_per_s\": 1.0, "
      << "\"cache_bytes\": 1024}\n";
}

std::vector<double> repeat(double ppl, int n) { return std::vector<double>(n, std::log(ppl)); }

std::vector<double> concat(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

RunResult report(const std::string& dir) {
  return run_shell("'" + venv_python() + "' " + source_dir() + "/scripts/plots/stream_report.py " + dir + " --md " +
                   dir + "/table.md --csv " + dir + "/table.csv");
}

}  // namespace

TEST(StreamReport, ARecomputePrefixIsLabelledAndComparedLikeForLike) {
  TempDir dir;
  // 10 tokens streamed (9 scored): ppl 10 over tokens 1..3, then 1000 over 4..9 -> 10^((3 + 18) / 9) = 10^(7/3).
  write_run(dir.str(), "none__streaming_4+124", concat(repeat(10, 3), repeat(1000, 6)));
  write_run(dir.str(), "none__dense_0+10", repeat(100, 9));
  // Recompute over the first 4 tokens only (3 scored): ppl 10.
  write_run(dir.str(), "none__recompute_0+128", repeat(10, 3));
  const auto r = report(dir.str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string md = streamsink::read_file(dir.str() + "/table.md");

  EXPECT_NE(md.find("(10 tokens, or fewer where a column says so; 1 run(s) per cell)"), std::string::npos) << md;
  EXPECT_NE(md.find("| model | streaming 4+124 | dense (0+10) | recompute (0+128), first 4 tokens |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| vanilla | 215.44 | 100.00 | 10.00 |"), std::string::npos) << md;  // 10^(7/3) = 215.44
  EXPECT_NE(md.find("Like for like: the first 4 tokens"), std::string::npos) << md;
  EXPECT_NE(md.find("| vanilla | 10.00 | 100.00 | 10.00 |"), std::string::npos) << md;

  const std::string csv = streamsink::read_file(dir.str() + "/table.csv");
  EXPECT_NE(csv.find("common_tokens,ppl_common"), std::string::npos) << csv;
  EXPECT_NE(csv.find("none,4,124,0,215.4435,streaming,10,1.0,4,10.0000"), std::string::npos) << csv;
}

TEST(StreamReport, RunsOfOneLengthGetOneTable) {
  TempDir dir;
  write_run(dir.str(), "none__streaming_0+8", repeat(10, 5));
  write_run(dir.str(), "token__streaming_0+8", repeat(100, 5));
  const auto r = report(dir.str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string md = streamsink::read_file(dir.str() + "/table.md");
  EXPECT_NE(md.find("(6 tokens; 1 run(s) per cell)"), std::string::npos) << md;
  EXPECT_NE(md.find("| vanilla | 10.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| learnable sink token | 100.00 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("Like for like"), std::string::npos) << md;
  EXPECT_EQ(md.find("first "), std::string::npos) << md;
}
