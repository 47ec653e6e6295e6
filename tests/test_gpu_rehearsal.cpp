// ctest-labels: integration slow
// Rehearses scripts/experiments/gpu_run.sh end to end on the CPU (tiny config, synthetic corpus, seconds of
// training), so the one GPU lease is never spent on a typo: every phase runs and the summary and archive appear.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/file_util.h"
#include "tests/corpus_fixture.h"

using namespace streamsink::testing;

TEST(GpuRunRehearsal, EveryPhaseRunsAndTheSummaryHoldsTheTable) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string cmd = "REHEARSE=1 WORK=" + dir.str() + "/work OUT=" + dir.str() + "/out CORPUS_SRC=" + dir.str() +
                          "/text TRAIN_S=3 EVAL_TOKENS=1200 RECOMPUTE_TOKENS=150 STREAMSINK_BIN=" + STREAMSINK_BINARY +
                          " bash " + source_dir() + "/scripts/experiments/gpu_run.sh all > " + dir.str() +
                          "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = streamsink::read_file(dir.str() + "/log.txt");
  ASSERT_EQ(rc, 0) << log;
  const std::string summary = streamsink::read_file(dir.str() + "/out/summary.txt");
  for (const char* want : {"| vanilla |", "| learnable sink token |", "streaming 0+32", "streaming 4+28", "dense",
                           "recompute", "train_none", "eval", "first-token attention per layer"})
    EXPECT_NE(summary.find(want), std::string::npos) << want << "\n" << summary;
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/out/results.tar.gz"));
}
