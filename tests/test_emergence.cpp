// ctest-labels: integration slow
// Rehearses scripts/experiments/emergence.sh with scripts/experiments/emergence-quick.conf (two tiny runs of a few
// seconds, one per tokenizer, on a synthetic corpus): the CSV holds one row per evaluation x layer that the
// trainer logged (its metrics.jsonl is the oracle), the Markdown a verdict per run, and the plot is a PNG.
#include <gtest/gtest.h>

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

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

// The evaluation records (step -> record) of RUN/metrics.jsonl.
std::map<int64_t, nlohmann::json> eval_records(const std::string& run) {
  std::map<int64_t, nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("val_loss")) out[j["step"].get<int64_t>()] = j;
  }
  return out;
}

// scripts/plots/emergence_plot.py over `args` (NAME=RUN_DIR ...), its Markdown report; "" (and a test failure with
// the script's output) when it fails.
std::string emergence_report(const TempDir& dir, const std::string& args) {
  const std::string res = dir.str() + "/res";
  const std::string cmd = "'" + venv_python() + "' " + source_dir() + "/scripts/plots/emergence_plot.py" + args +
                          " --csv " + res + "/e.csv --md " + res + "/e.md --png " + res + "/e.png > " + dir.str() +
                          "/log.txt 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << streamsink::read_file(dir.str() + "/log.txt");
    return "";
  }
  return streamsink::read_file(res + "/e.md");
}

}  // namespace

TEST(EmergenceStudy, QuickConfWritesOneRowPerEvalAndLayerAVerdictPerRunAndAPlot) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string out = dir.str() + "/out", res = dir.str() + "/results";
  const std::string cmd = "CORPUS=" + dir.str() + "/text OUT=" + out + " RESULTS=" + res +
                          " STREAMSINK_BIN=" + streamsink_binary() + " bash " + source_dir() +
                          "/scripts/experiments/emergence.sh " + source_dir() +
                          "/scripts/experiments/emergence-quick.conf > " + dir.str() + "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = streamsink::read_file(dir.str() + "/log.txt");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("# emergence study:"), std::string::npos) << log;  // the resolved settings
  EXPECT_NE(log.find("criterion:"), std::string::npos) << log;          // the summary

  const auto lines = split(streamsink::read_file(res + "/emergence.csv"), '\n');
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "run,step,tokens,layer,first_share,window_loss,sink4_loss,sink_window,val_loss,sink_gap_se");
  std::map<std::string, std::map<int64_t, std::vector<std::vector<std::string>>>> rows;  // run -> step -> rows
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    auto f = split(lines[i], ',');
    ASSERT_EQ(f.size(), 10u) << lines[i];
    rows[f[0]][std::stoll(f[1])].push_back(f);
  }
  const std::vector<std::string> runs = {"tiny-sp512", "tiny-bytes-lr3x"};
  ASSERT_EQ(rows.size(), runs.size());
  for (const auto& run : runs) {
    SCOPED_TRACE(run);
    const auto evals = eval_records(out + "/" + run);
    ASSERT_FALSE(evals.empty());
    ASSERT_EQ(rows[run].size(), evals.size());  // every evaluation the trainer logged, no more
    for (const auto& [step, rec] : evals) {
      const auto& r = rows[run][step];
      const auto& shares = rec["sink_first_share"];
      ASSERT_EQ(r.size(), shares.size()) << "one row per layer at step " << step;
      for (size_t layer = 0; layer < r.size(); ++layer) {
        EXPECT_EQ(std::stoll(r[layer][2]), step * 8 * 64);  // tiny.yaml: 8 x 64 tokens a step
        EXPECT_EQ(std::stoll(r[layer][3]), static_cast<int64_t>(layer));
        EXPECT_NEAR(std::stod(r[layer][4]), shares[layer].get<double>(), 1e-5);
        EXPECT_NEAR(std::stod(r[layer][5]), rec["window_loss"].get<double>(), 1e-4);
        EXPECT_NEAR(std::stod(r[layer][6]), rec["sink4_loss"].get<double>(), 1e-4);
        EXPECT_EQ(std::stoll(r[layer][7]), 32);  // W = seq_len / 2
        EXPECT_NEAR(std::stod(r[layer][8]), rec["val_loss"].get<double>(), 1e-4);
        EXPECT_NEAR(std::stod(r[layer][9]), rec["sink_gap_se"].get<double>(), 1e-6);
      }
    }
  }

  const std::string md = streamsink::read_file(res + "/emergence.md");
  EXPECT_NE(md.find("## The criterion"), std::string::npos) << md;
  for (const auto& run : runs) {
    const auto at = md.find("- **" + run + "**: ");
    ASSERT_NE(at, std::string::npos) << run << "\n" << md;
    const std::string verdict = md.substr(at, md.find('\n', at) - at);
    bool named = false;
    for (const char* v : {"**: sink after", "**: attention only after", "**: loss gap only after", "**: no sink after"})
      named = named || verdict.find(v) != std::string::npos;
    EXPECT_TRUE(named) << verdict;
  }

  const std::string png = streamsink::read_file(res + "/emergence.png");
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

// The verdict against runs whose metrics are made up so that the answer is known: at T = 256 uniform causal
// attention gives the first position (H(256) - 1) / 255 = 2.0% (the mean over queries t = 1..255 of 1/(t+1)), so the
// attention bar at 5x is 10.0%; the loss bar is window > 4 sinks by 1% and by 2 standard errors (where the run
// logged one). Only the last evaluation decides.
TEST(EmergenceStudy, VerdictFollowsTheStatedCriterionOnRunsWithKnownMetrics) {
  TempDir dir;
  struct Run {
    std::string name;
    double share, window_loss;  // last evaluation: the strongest layer's share; window loss (4-sink loss is 4.0)
    std::string verdict;
    double gap_se = -1;  // the gap's standard error; -1: not logged (a run from before it was recorded), -2: null
  };
  const std::vector<Run> runs = {{"both", 0.30, 4.20, "sink after"},
                                 {"attention", 0.30, 4.02, "attention only after"},  // +0.5%: under the bar
                                 {"gap", 0.09, 4.20, "loss gap only after"},         // 4.5x uniform: under the bar
                                 {"neither", 0.02, 4.00, "no sink after"},
                                 {"clear", 0.30, 4.20, "sink after", 0.05},            // +5% = 4 s.e.
                                 {"noisy", 0.30, 4.20, "attention only after", 0.15},  // +5% but 1.3 s.e.
                                 {"one", 0.30, 4.20, "sink after", -2}};  // one sequence: s.e. null, relative bar
  std::string args;
  for (const auto& r : runs) {
    const std::string d = dir.str() + "/" + r.name;
    std::filesystem::create_directories(d);
    streamsink::write_file_atomic(d + "/config.yaml",
                                  "model:\n  sink: none\ntrain:\n  batch_size: 8\n  seq_len: 256\n  steps: 20\n");
    nlohmann::json train = {{"step", 10}, {"loss", 5.0}, {"tokens_seen", 20480}};
    // The first evaluation shows a sink in every run: the verdict must come from the last one.
    nlohmann::json e1 = {{"step", 10}, {"val_loss", 5.0}, {"sink_first_share", {0.5, 0.5}}, {"window_loss", 5.0},
                         {"sink4_loss", 4.0}, {"sink_window", 128}};
    nlohmann::json e2 = {{"step", 20}, {"val_loss", 4.5}, {"sink_first_share", {0.01, r.share}},
                         {"window_loss", r.window_loss}, {"sink4_loss", 4.0}, {"sink_window", 128}};
    if (r.gap_se >= 0) e2["sink_gap_se"] = r.gap_se;
    if (r.gap_se == -2) e2["sink_gap_se"] = nullptr;
    streamsink::write_file_atomic(d + "/metrics.jsonl", train.dump() + "\n" + e1.dump() + "\n" + e2.dump() + "\n");
    args += " " + r.name + "=" + d;
  }
  const std::string md = emergence_report(dir, args);
  EXPECT_NE(md.find("2.0% at T = 256"), std::string::npos) << md;  // the uniform share, closed form above
  for (const auto& r : runs) {
    const auto at = md.find("- **" + r.name + "**: ");
    ASSERT_NE(at, std::string::npos) << r.name << "\n" << md;
    EXPECT_EQ(md.substr(at, md.find('\n', at) - at).find("**: " + r.verdict), 4 + r.name.size()) << md;
  }
  EXPECT_NE(md.find("+5.00% ± 3.75%"), std::string::npos) << md;  // noisy: 0.15 / 4.0 of the 4-sink loss
}

// The bar against the uniform share of the model's own T, and "sink first at" as the first evaluation where BOTH
// criteria held. At T = 256 the uniform share is 2.0% (above), so 12% is 6.0x: over the bar (at T = 128, W, it
// would be 3.4x: under). Run "late" has attention only at step 10 (no loss gap) and both from step 20 on: with
// 20480 / 10 = 2048 tokens a step its sink is first at 40960 tokens (41.0k), not 20.5k.
TEST(EmergenceStudy, TheBarUsesTheRunsOwnTAndSinkFirstAtNeedsBothCriteria) {
  TempDir dir;
  std::string args;
  const auto run = [&](const std::string& name, const std::vector<nlohmann::json>& evals) {
    const std::string d = dir.str() + "/" + name;
    std::filesystem::create_directories(d);
    streamsink::write_file_atomic(d + "/config.yaml",
                                  "model:\n  sink: none\ntrain:\n  batch_size: 8\n  seq_len: 256\n  steps: 30\n");
    std::string metrics = nlohmann::json({{"step", 10}, {"loss", 5.0}, {"tokens_seen", 20480}}).dump() + "\n";
    for (const auto& e : evals) metrics += e.dump() + "\n";
    streamsink::write_file_atomic(d + "/metrics.jsonl", metrics);
    args += " " + name + "=" + d;
  };
  const auto eval = [](int64_t step, double share, double window_loss) {
    return nlohmann::json{{"step", step}, {"val_loss", 4.5}, {"sink_first_share", {0.01, share}},
                          {"window_loss", window_loss}, {"sink4_loss", 4.0}, {"sink_window", 128}};
  };
  run("barely", {eval(10, 0.12, 4.2)});
  run("late", {eval(10, 0.5, 4.0), eval(20, 0.5, 4.2), eval(30, 0.5, 4.2)});
  const std::string md = emergence_report(dir, args);
  EXPECT_NE(md.find("- **barely**: sink after 20.5k tokens: layer 1 gives the first position 12.0% of attention, "
                    "6.0x its uniform share (2.0%; bar 5x)"),
            std::string::npos) << md;
  const auto row = md.find("| late | 61.4k |");
  ASSERT_NE(row, std::string::npos) << md;
  EXPECT_NE(md.substr(row, md.find('\n', row) - row).find("| **sink** | 41.0k tokens |"), std::string::npos) << md;
}

// sink_summary.py's bad input: an argument without NAME= is a usage error, a missing or foreign file an error naming
// it; neither a traceback.
TEST(SinkSummary, BadArgumentsAndFilesAreClearErrors) {
  TempDir dir;
  const std::string script = "'" + venv_python() + "' " + source_dir() + "/scripts/plots/sink_summary.py ";
  auto r = run_shell(script + dir.str() + "/attention.json");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("want NAME=PATH/attention.json"), std::string::npos) << r.output;
  streamsink::write_file_atomic(dir.str() + "/other.json", R"({"layers": []})");
  for (const std::string path : {dir.str() + "/missing.json", dir.str() + "/other.json"}) {
    r = run_shell(script + "m=" + path);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(path + ": not an attention.json"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;
  }
}

// scripts/plots/sink_summary.py (the verdict from attention maps) against maps made up so that the answer is known:
// at T = 64 uniform causal attention gives token 0 the mean over t = 1..63 of 1/(t+1) = (H(64) - 1) / 63 = 5.94%
// (inspect-attention writes it as uniform_first_token_share), so the bar at 5x is 29.7%: 40% is a sink (6.7x,
// printed 7x), 25% (4.2x) is not; against 1/64 both would be.
TEST(SinkSummary, TheVerdictComparesTheStrongestLayerWithFiveTimesTheCausalUniformShare) {
  TempDir dir;
  double uniform = 0;
  for (int t = 1; t < 64; ++t) uniform += 1.0 / (t + 1);
  uniform /= 63;
  const auto maps = [&](const std::string& name, std::vector<double> shares) {
    nlohmann::json j = {{"tokens", 64}, {"samples", 4}, {"first_k", 1}, {"uniform_first_token_share", uniform}};
    for (size_t l = 0; l < shares.size(); ++l) j["layers"].push_back({{"layer", l}, {"mean_first_token_share", shares[l]}});
    streamsink::write_file_atomic(dir.str() + "/" + name + ".json", j.dump());
    return " " + name + "=" + dir.str() + "/" + name + ".json";
  };
  const std::string args = maps("sinky", {0.05, 0.40}) + maps("flat", {0.25, 0.10});
  const auto r = run_shell("'" + venv_python() + "' " + source_dir() + "/scripts/plots/sink_summary.py" + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("   sinky: first-token attention per layer 0.050 0.400 (uniform 0.059) -> a sink: the first "
                          "token draws 7× its uniform share in its strongest layer"),
            std::string::npos) << r.output;
  EXPECT_NE(r.output.find("    flat: first-token attention per layer 0.250 0.100 (uniform 0.059) -> no sink: no layer "
                          "gives the first token more than 5× its uniform share"),
            std::string::npos) << r.output;
}

// The budget holds across invocations and a DEADLINE always leaves time for the report (both found in review,
// session 8): a run whose time cap earlier invocations spent is not resumed (before, every rerun trained it up to
// another cap), a run with no time left before DEADLINE is not started, the report is still written, and
// COPY_METRICS returns the runs' metrics as one archive (a device machine returns at most 8 files).
TEST(EmergenceStudy, ARerunKeepsTheTimeCapADeadlineSkipsRunsAndTheReportIsStillWritten) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string out = dir.str() + "/out", res = dir.str() + "/results", conf = dir.str() + "/capped.conf";
  {
    std::ofstream c(conf);
    c << "source \"$root/scripts/experiments/emergence-quick.conf\"\nBUDGET_S=30\nCAP_PCT=100\nCOPY_METRICS=1\n";
  }
  auto run = [&](const std::string& env) {
    const std::string cmd = env + " CORPUS=" + dir.str() + "/text OUT=" + out + " RESULTS=" + res +
                            " STREAMSINK_BIN=" + streamsink_binary() + " bash " + source_dir() +
                            "/scripts/experiments/emergence.sh " + conf + " > " + dir.str() + "/log.txt 2>&1";
    const int rc = std::system(cmd.c_str());
    return std::make_pair(rc, streamsink::read_file(dir.str() + "/log.txt"));
  };
  // 1. One run trains (its steps are pinned).
  auto [rc1, log1] = run("ONLY=tiny-bytes-lr3x");
  ASSERT_EQ(rc1, 0) << log1;
  // 2. DEADLINE now: the other run is not started; the finished one is reported.
  auto [rc2, log2] = run("DEADLINE=$(date +%s)");
  EXPECT_EQ(rc2, 0) << log2;
  EXPECT_NE(log2.find("DEADLINE: under 20 s left before the report; run tiny-sp512 not (re)started"),
            std::string::npos) << log2;
  EXPECT_FALSE(std::filesystem::exists(out + "/tiny-sp512/config.yaml")) << log2;
  EXPECT_NE(streamsink::read_file(res + "/emergence.md").find("tiny-bytes-lr3x"), std::string::npos);
  // 3. A run whose 30 s cap earlier invocations spent is not resumed.
  std::filesystem::create_directories(out + "/tiny-sp512");
  std::ofstream(out + "/tiny-sp512/emergence.json")
      << R"({"steps": 24, "probe_tok_s": 1000, "tokens_per_step": 512, "budget_s": 30, "train_wall_s": 31})";
  auto [rc3, log3] = run("");
  EXPECT_EQ(rc3, 0) << log3;
  EXPECT_NE(log3.find("tiny-sp512: its time cap (30s) was spent by earlier invocations (31s of training): not resumed"),
            std::string::npos) << log3;
  EXPECT_FALSE(std::filesystem::exists(out + "/tiny-sp512/config.yaml")) << log3;
  const auto listing = run_shell("tar -tzf " + res + "/emergence-metrics.tar.gz");
  ASSERT_EQ(listing.exit_code, 0) << listing.output;
  EXPECT_NE(listing.output.find("./tiny-bytes-lr3x/metrics.jsonl"), std::string::npos) << listing.output;
  EXPECT_NE(listing.output.find("./tiny-bytes-lr3x/emergence.json"), std::string::npos) << listing.output;
}
