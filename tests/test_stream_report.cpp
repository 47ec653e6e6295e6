// ctest-labels: integration
// scripts/plots/stream_report.py (the streaming table of the demo, Figure 3, Table 3 and the GPU lease) against eval
// folders whose answers are known in closed form: per-token NLLs chosen so that every perplexity is a power of ten.
// A cache run over fewer tokens (recompute, over a prefix) must say so in its column, and the like-for-like table
// must compare every cache over the same first tokens. Also scripts/plots/plot_stream.py's curves.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
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

// Several seeds per cell, one column over a mix of lengths, and a prefix whose tokens differ. Every figure is
// closed form: perplexity is exp(mean NLL) (over tokens 1..3 scored with perplexities 10, 100, 1000 that is 100, not
// their mean 370), a cell is the mean ± the sample std (n - 1) over its seeds, the runs-per-cell count is the
// largest cell's, and a cell with fewer runs says how many (before session 8 it did not).
TEST(StreamReport, SeedsAreAveragedWithTheSampleStdAndPrefixesUseExpMeanNll) {
  TempDir dir;
  const std::vector<double> rising = {std::log(10.0), std::log(100.0), std::log(1000.0)};
  write_run(dir.str(), "none__streaming_4+28__seed1", concat(rising, repeat(100, 6)));  // 10^((1+2+3+12)/9) = 100
  write_run(dir.str(), "none__streaming_4+28__seed2", repeat(200, 9));
  write_run(dir.str(), "none__streaming_4+28__seed3", repeat(300, 9));
  write_run(dir.str(), "none__dense_0+10__seed1", concat(repeat(10, 3), repeat(1000, 6)));  // 10^(21/9) = 215.44
  write_run(dir.str(), "none__dense_0+10__seed2", repeat(190, 3));  // 4 tokens: a shorter run in a full column
  for (int seed = 1; seed <= 3; ++seed)
    write_run(dir.str(), "none__recompute_0+32__seed" + std::to_string(seed), repeat(10.0 * seed, 3));
  const auto r = report(dir.str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string md = streamsink::read_file(dir.str() + "/table.md");

  EXPECT_NE(md.find("3 run(s) per cell, mean ± std; a cell with fewer says how many)"), std::string::npos) << md;
  // The dense column mixes a 10-token and a 4-token run: its head names both lengths.
  EXPECT_NE(md.find("| model | streaming 4+28 | dense (0+10), first 4/10 tokens | recompute (0+32), first 4 tokens |"),
            std::string::npos) << md;
  // mean(100, 200, 300) = 200, std 100; mean(215.44, 190) = 202.72, std 25.44 / sqrt 2 = 17.99; 20 ± 10.
  EXPECT_NE(md.find("| vanilla | 200.00 ± 100.00 | 202.72 ± 17.99 (2 runs) | 20.00 ± 10.00 |"), std::string::npos) << md;
  // Over the first 4 tokens: streaming seed 1 is 10^((1+2+3)/3) = 100; dense (10 + 190) / 2 = 100, std 127.28.
  EXPECT_NE(md.find("Like for like: the first 4 tokens"), std::string::npos) << md;
  EXPECT_NE(md.find("| vanilla | 200.00 ± 100.00 | 100.00 ± 127.28 (2 runs) | 20.00 ± 10.00 |"), std::string::npos) << md;

  const std::string csv = streamsink::read_file(dir.str() + "/table.csv");
  EXPECT_NE(csv.find("none,4,28,1,100.0000,streaming,10,1.0,4,100.0000"), std::string::npos) << csv;
  EXPECT_NE(csv.find("none,0,10,1,215.4435,dense,10,1.0,4,10.0000"), std::string::npos) << csv;
}

// scripts/plots/plot_stream.py (Figure 3's curves), its plotted data caught at matplotlib's Axes.plot: token i
// scored with NLL i ln 2 (i = 1..8), so the trailing 3-token mean of the NLLs ending at token i is (i - 1) ln 2 for
// i >= 3, and over the tokens there are before: ln 2 at token 1, 1.5 ln 2 at token 2. The curve is drawn at every
// token (a full window only would start at token 3, hiding what happens around a short training length), and the
// legend's perplexity exp(mean NLL) = 2^4.5 = 22.63.
TEST(PlotStream, MovingAverageEndsAtItsBlocksLastTokenAndTheLegendIsExpMeanNll) {
  TempDir dir;
  {
    std::ofstream f(dir.str() + "/s.nll.jsonl");
    f << std::setprecision(17);
    for (int i = 1; i <= 8; ++i) f << "{\"i\": " << i << ", \"token\": 7, \"nll\": " << i * std::log(2.0) << "}\n";
  }
  std::ofstream(dir.str() + "/catch.py") << R"(import json, runpy, sys
import matplotlib
matplotlib.use("Agg")
from matplotlib.axes import Axes
seen, plot = [], Axes.plot
def caught(self, *a, **k):
    seen.append({"x": [float(v) for v in a[0]], "y": [float(v) for v in a[1]], "label": k.get("label")})
    return plot(self, *a, **k)
Axes.plot = caught
script, out = sys.argv[1], sys.argv[2]
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
json.dump(seen, open(out, "w"))
)";
  const auto r = run_shell("'" + venv_python() + "' " + dir.str() + "/catch.py " + source_dir() +
                           "/scripts/plots/plot_stream.py " + dir.str() + "/plot.json " + dir.str() +
                           "/plot.png --smooth 3 s=" + dir.str() + "/s.nll.jsonl");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = nlohmann::json::parse(streamsink::read_file(dir.str() + "/plot.json"));
  ASSERT_EQ(lines.size(), 1u) << lines.dump();
  EXPECT_EQ(lines[0]["label"], "s (ppl 22.63)");
  const auto& x = lines[0]["x"];
  const auto& y = lines[0]["y"];
  ASSERT_EQ(x.size(), 8u) << lines.dump();
  ASSERT_EQ(y.size(), 8u) << lines.dump();
  for (size_t j = 0; j < 8; ++j) {
    const double i = 1.0 + j;
    EXPECT_EQ(x[j].get<double>(), i) << lines.dump();
    const double mean = i >= 3 ? i - 1 : (i == 1 ? 1.0 : 1.5);
    EXPECT_NEAR(y[j].get<double>(), std::pow(2.0, mean), 1e-9) << lines.dump();
  }
  EXPECT_GT(std::filesystem::file_size(dir.str() + "/plot.png"), 0u);

  // Beside a curve over the first 4 tokens only, each legend's perplexity is over those 4: 2^2.5 = 5.66 (session 8;
  // before, each was over its own length, and Figure 3 set a recompute prefix's ppl beside whole-stream ones).
  {
    std::ofstream f(dir.str() + "/short.nll.jsonl");
    f << std::setprecision(17);
    for (int i = 1; i <= 4; ++i) f << "{\"i\": " << i << ", \"token\": 7, \"nll\": " << i * std::log(2.0) << "}\n";
  }
  const auto r2 = run_shell("'" + venv_python() + "' " + dir.str() + "/catch.py " + source_dir() +
                            "/scripts/plots/plot_stream.py " + dir.str() + "/plot2.json " + dir.str() +
                            "/plot2.png --smooth 3 s=" + dir.str() + "/s.nll.jsonl short=" + dir.str() +
                            "/short.nll.jsonl");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto two = nlohmann::json::parse(streamsink::read_file(dir.str() + "/plot2.json"));
  ASSERT_EQ(two.size(), 2u) << two.dump();
  EXPECT_EQ(two[0]["label"], "s (ppl 5.66)");
  EXPECT_EQ(two[1]["label"], "short (ppl 5.66)");
}
