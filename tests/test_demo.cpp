// ctest-labels: integration slow
// The README's main command, scripts/demo.sh, at toy size: an already built executable (no set-up, no build), a
// synthetic corpus, 24 steps a model. Every output the README names appears with both models in it, the recompute
// column says it covers fewer tokens, and an earlier demo's folder (another vocabulary) is refused, untouched.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/file_util.h"
#include "tests/corpus_fixture.h"

using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

int run_demo(const TempDir& dir, const std::string& out, const std::string& log) {
  const std::string cmd = "STREAMSINK_BIN=" + streamsink_binary() + " STREAMSINK_PYTHON=" + venv_python() +
                          " OUT=" + out + " CORPUS=" + dir.str() + "/text STEPS=24 EVAL_TOKENS=400 RECOMPUTE_TOKENS=100 "
                          "bash " + source_dir() + "/scripts/demo.sh > " + log + " 2>&1";
  return std::system(cmd.c_str());
}

}  // namespace

TEST(Demo, WritesEveryOutputTheReadmeNamesForBothModels) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string out = dir.str() + "/out", log = dir.str() + "/log.txt";
  ASSERT_EQ(run_demo(dir, out, log), 0) << streamsink::read_file(log);

  const std::string table = streamsink::read_file(out + "/table.md");
  for (const char* want : {"| vanilla |", "| learnable sink token |", "streaming 0+32", "streaming 1+31",
                           "streaming 4+28", "dense (0+400)", "recompute (0+32), first 100 tokens",
                           "recompute (1+31), first 100 tokens", "Like for like"})
    EXPECT_NE(table.find(want), std::string::npos) << want << "\n" << table;
  const std::string sinks = streamsink::read_file(out + "/sinks.txt");
  EXPECT_NE(sinks.find("vanilla: first-token attention per layer"), std::string::npos) << sinks;
  EXPECT_NE(sinks.find("token: first-token attention per layer"), std::string::npos) << sinks;
  const std::string training = streamsink::read_file(out + "/training.md");
  EXPECT_NE(training.find("## Verdicts"), std::string::npos) << training;
  for (const char* png : {"/stream_ppl_none.png", "/stream_ppl_token.png", "/training.png",
                          "/attention-none/layer_0.png", "/attention-token/layer_0.png", "/attention-none.png",
                          "/attention-token.png"})
    EXPECT_GT(fs::exists(out + png) ? fs::file_size(out + png) : 0, 0u) << png;
  for (const char* run : {"/none", "/token"}) {  // both models, same budget
    const std::string config = streamsink::read_file(out + run + "/config.yaml");
    EXPECT_NE(config.find("steps: 24"), std::string::npos) << config;
    EXPECT_NE(config.find("vocab_size: 512"), std::string::npos) << config;
  }
}

TEST(Demo, RefusesAnEarlierDemosFolderAndLeavesItAlone) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string out = dir.str() + "/out", log = dir.str() + "/log.txt";
  const std::string manifest = "{\n  \"vocab_size\": 4096\n}\n";  // the kernel-docs demo's data, as far as it matters
  fs::create_directories(out + "/data");
  std::ofstream(out + "/data/manifest.json") << manifest;
  EXPECT_NE(run_demo(dir, out, log), 0);
  const std::string text = streamsink::read_file(log);
  EXPECT_NE(text.find(out + "/data/manifest.json is from an earlier demo"), std::string::npos) << text;
  EXPECT_EQ(streamsink::read_file(out + "/data/manifest.json"), manifest);
  EXPECT_FALSE(fs::exists(out + "/none")) << "nothing trained";
}
