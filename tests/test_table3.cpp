// ctest-labels: integration slow
// Rehearses scripts/experiments/table3.sh (the paper's Table 3 at small scale) at toy size: four sink variants from
// one BASE_CONFIG on a synthetic corpus, each streamed with two caches. The runs' own resolved configs are the
// oracle for which variant each row holds; the CSV has one row per run and cache; the Markdown table a row per
// variant and the paper's table beside it; each variant's cells are its own models' (evaluated again here).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "common/file_util.h"
#include "tests/corpus_fixture.h"

using namespace streamsink::testing;

TEST(Table3Script, EveryVariantFromOneBaseConfigGetsItsRowAndItsRuns) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  std::ofstream(dir.path() / "t3.conf") << "NAME=t3\nBASE_CONFIG=configs/tiny.yaml\nVARIANTS=\"none token zero logit\"\n"
                                           "SEEDS=\"7\"\nSTEPS=6\nSINKS=\"0 1\"\nWINDOW=16\nEVAL_TOKENS=300\nVOCAB=512\n"
                                           "EXTRA_SET=\"--set model.vocab_size=512 --set train.eval_interval=0\n"
                                           "           --set train.checkpoint_interval=0\"\n";
  const std::string cmd = "SPLIT_FRACTION=0.1 CORPUS=" + dir.str() + "/text DATA_ROOT=" + dir.str() + "/data-root OUT=" + dir.str() +
                          "/out RESULTS=" + dir.str() + "/results STREAMSINK_BIN=" + streamsink_binary() + " bash " +
                          source_dir() + "/scripts/experiments/table3.sh " + dir.str() + "/t3.conf > " + dir.str() +
                          "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = streamsink::read_file(dir.str() + "/log.txt");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("t3 done in"), std::string::npos) << log;

  for (const std::string v : {"none", "token", "zero", "logit"}) {  // each run trained the variant its row names
    const std::string config = streamsink::read_file(dir.str() + "/out/" + v + "-seed7/config.yaml");
    EXPECT_NE(config.find("sink: " + v), std::string::npos) << v << "\n" << config;
    EXPECT_NE(config.find("seed: 7"), std::string::npos) << config;
    EXPECT_NE(config.find("dim: 64"), std::string::npos) << "tiny.yaml's geometry\n" << config;
  }
  const std::string md = streamsink::read_file(dir.str() + "/results/t3.md");
  for (const char* want : {"| model | streaming 0+16 | streaming 1+15 |", "| vanilla |", "| learnable sink token |",
                           "| zero sink |", "| learned sink logit |", "The paper's Table 3"})
    EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;
  std::istringstream csv(streamsink::read_file(dir.str() + "/results/t3.csv"));
  std::string line;
  int rows = -1;  // the header
  while (std::getline(csv, line)) rows += !line.empty();
  EXPECT_EQ(rows, 4 * 2) << "one row per variant and cache";

  // The trainer's own figures beside the table: every run's last evaluation, its validation loss as metrics.jsonl
  // logged it, and a verdict per run.
  const std::string training = streamsink::read_file(dir.str() + "/results/t3-training.md");
  EXPECT_EQ(training.rfind("# What the trainer measured in the runs of t3", 0), 0u) << training;
  for (const std::string v : {"none", "token", "zero", "logit"}) {
    const std::string run = v + "-seed7";
    double val = -1;
    std::ifstream metrics(dir.str() + "/out/" + run + "/metrics.jsonl");
    for (std::string l; std::getline(metrics, l);)
      if (auto j = nlohmann::json::parse(l); j.contains("val_loss")) val = j["val_loss"].get<double>();
    ASSERT_GT(val, 0) << run;
    char cell[32];
    std::snprintf(cell, sizeof cell, "| %.4f |", val);
    const auto row = training.find("| " + run + " | ", training.find("## Final metrics"));
    ASSERT_NE(row, std::string::npos) << run << "\n" << training;
    EXPECT_NE(training.substr(row, training.find('\n', row) - row).find(cell), std::string::npos) << cell << "\n"
                                                                                                  << training;
    EXPECT_NE(training.find("- **" + run + "**: "), std::string::npos) << training;
    // The runs table names the config, the tokenizer and the parameter count (from the run's emergence.json and
    // train.log, which table3.sh writes; before session 12 these read "?").
    const auto runs_row = training.find("| " + run + " | ", training.find("## Runs"));
    ASSERT_NE(runs_row, std::string::npos) << run << "\n" << training;
    const std::string cells = training.substr(runs_row, training.find('\n', runs_row) - runs_row);
    EXPECT_NE(cells.find("| `configs/tiny.yaml` | " + dir.str() + "/data-root/data/tokenizer.model (512) | "),
              std::string::npos) << cells;
    EXPECT_EQ(cells.find("?"), std::string::npos) << cells;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/results/t3-training.csv"));

  // Each variant's cells come from its own model: its 0+16 evaluation, run again here on the variant's checkpoint,
  // scores the same mean NLL, and the four variants' models differ.
  std::set<double> means;
  for (const std::string v : {"none", "token", "zero", "logit"}) {
    const std::string again = dir.str() + "/again-" + v + ".nll.jsonl";
    const auto r = run_shell(streamsink_binary() + " eval-stream --checkpoint " + dir.str() + "/out/" + v +
                             "-seed7 --data " + dir.str() + "/data-root/data --policy streaming --sinks 0 --window 16 "
                             "--tokens 300 --out " + again);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto mine = nlohmann::json::parse(streamsink::read_file(again + ".summary.json"));
    const auto table = nlohmann::json::parse(
        streamsink::read_file(dir.str() + "/out/eval/" + v + "__streaming_0+16__seed7.nll.jsonl.summary.json"));
    EXPECT_NEAR(table["mean_nll"].get<double>(), mine["mean_nll"].get<double>(), 1e-6) << v;
    means.insert(mine["mean_nll"].get<double>());
  }
  EXPECT_EQ(means.size(), 4u);
}
