// ctest-labels: slow
// The infer commands through the real executable, on a checkpoint written here (tiny model, a tokenizer trained
// on tests/data): eval-stream on a shard, a data folder and a text file; generate (greedy is reproducible, a
// SIGINT stops an endless run cleanly); chat over stdin; inspect-attention; and bad input: clear errors, non-zero
// exit.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/model_io.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::run_streamsink;
using streamsink::testing::run_shell;
using streamsink::testing::TempDir;

namespace {

void write_checkpoint(const std::string& dir, const ModelConfig& cfg, uint64_t seed) {
  std::filesystem::create_directories(dir);
  at::manual_seed(seed);
  Transformer m(cfg);
  YAML::Node root, mn;
  model_config_to_yaml(cfg, mn);
  root["model"] = mn;
  write_file_atomic(dir + "/config.yaml", YAML::Dump(root));
  save_model_weights(dir, m);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class InferCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    TokenizerTrainConfig tc;
    tc.inputs = {streamsink::testing::source_dir() + "/tests/data/corpus"};
    tc.vocab_size = 1000;
    tc.out = ckpt() + "/tokenizer.model";
    tc.num_threads = 2;
    std::filesystem::create_directories(ckpt());
    train_tokenizer(tc);
    for (auto sink : {SinkKind::kNone, SinkKind::kToken}) {
      auto cfg = streamsink::testing::tiny_config(sink);
      cfg.vocab_size = 1000;
      cfg.context_length = 64;
      cfg.init_std = 0.05;
      const std::string d = sink == SinkKind::kNone ? ckpt() : dir_->str() + "/ckpt_token";
      write_checkpoint(d, cfg, 1);
      if (sink == SinkKind::kToken) std::filesystem::copy_file(ckpt() + "/tokenizer.model", d + "/tokenizer.model");
    }
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    auto t = at::randint(8, 1000, {600}, gen, at::kInt);
    std::vector<int32_t> toks(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + 600);
    std::filesystem::create_directories(data());
    write_shard(data() + "/test_000000.bin", toks, TokenDtype::kU16);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string ckpt() { return dir_->str() + "/ckpt"; }
  static std::string data() { return dir_->str() + "/data"; }
  static std::string text() { return streamsink::testing::source_dir() + "/tests/data/corpus/streaming.txt"; }
  static TempDir* dir_;
};
TempDir* InferCli::dir_ = nullptr;

}  // namespace

TEST_F(InferCli, EvalStreamOnAShardWritesPerTokenNllAndASummary) {
  const std::string out = dir_->str() + "/nll.jsonl";
  auto r = run_streamsink("eval-stream --checkpoint " + ckpt() + " --data " + data() +
                          "/test_000000.bin --policy streaming --sinks 4 --window 32 --tokens 300 --chunk 16 "
                          "--block 100 --threads 1 --device cpu --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("perplexity"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos);
  EXPECT_NE(r.output.find("block    2"), std::string::npos) << r.output;
  const auto lines = slurp(out);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 299);
  const auto summary = slurp(out + ".summary.json");
  EXPECT_NE(summary.find("\"ppl\""), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"tokens\": 300"), std::string::npos) << summary;
}

TEST_F(InferCli, EvalStreamEveryPolicyOnAFolderAndATextFile) {
  for (const std::string policy : {"dense", "window", "recompute", "streaming"}) {
    auto r = run_streamsink("eval-stream --checkpoint " + dir_->str() + "/ckpt_token --data " + data() +
                            " --policy " + policy + " --window 24 --tokens 120 --threads 1 --device cpu");
    EXPECT_EQ(r.exit_code, 0) << policy << "\n" << r.output;
    EXPECT_NE(r.output.find("perplexity"), std::string::npos) << r.output;
  }
  auto r = run_streamsink("eval-stream --checkpoint " + ckpt() + " --data " + text() +
                          " --window 32 --tokens 200 --positions text --threads 1 --device cpu");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("200 tokens"), std::string::npos) << r.output;
}

TEST_F(InferCli, BadInputIsAClearErrorAndANonZeroExit) {
  auto expect_error = [](const std::string& args, const std::string& needle) {
    auto r = run_streamsink(args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  };
  const std::string base = "eval-stream --device cpu --data " + data() + " --checkpoint ";
  expect_error(base + dir_->str() + "/nowhere", "nowhere");
  expect_error(base + ckpt() + " --window 0", "--window");
  expect_error(base + ckpt() + " --window -5", "--window");
  expect_error(base + ckpt() + " --sinks 64 --window 16", "--sinks");
  expect_error(base + ckpt() + " --policy lru", "--policy");
  expect_error(base + ckpt() + " --positions absolute", "--positions");
  // a checkpoint whose config does not match its weights
  const std::string bad = dir_->str() + "/bad";
  write_checkpoint(bad, streamsink::testing::tiny_config(), 2);  // vocab 64
  auto cfg = streamsink::testing::tiny_config();
  cfg.dim = 64;
  YAML::Node root, mn;
  model_config_to_yaml(cfg, mn);
  root["model"] = mn;
  write_file_atomic(bad + "/config.yaml", YAML::Dump(root));
  expect_error(base + bad, "model.safetensors");
  // data made with a bigger vocabulary than the model's
  const std::string small = dir_->str() + "/small";
  write_checkpoint(small, streamsink::testing::tiny_config(), 2);  // vocab 64 < the shard's ids
  expect_error(base + small, "vocabulary");
  expect_error("generate --device cpu --checkpoint " + ckpt() + " --prompt hi --top-p 2", "--top-p");
  expect_error("generate --device cpu --checkpoint " + ckpt(), "--prompt");
}

TEST_F(InferCli, GreedyGenerationIsReproducibleAndPrintsText) {
  const std::string args = streamsink::testing::streamsink_binary() + " generate --device cpu --threads 1 --checkpoint " +
                           ckpt() + " --prompt 'The attention sink' --max-new-tokens 40 --ignore-eos --sinks 4 "
                           "--window 16";
  auto a = run_shell("(" + args + " --temperature 0 2>/dev/null)");  // stdout only: the text
  auto b = run_shell("(" + args + " --temperature 0 2>/dev/null)");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_GT(a.output.size(), 5u);
  auto c = run_shell(args + " --temperature 1 --seed 3");
  EXPECT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("40 tokens"), std::string::npos) << c.output;
}

TEST_F(InferCli, AnEndlessGenerationStopsCleanlyOnSigint) {
  // stdout (the text) to /dev/null, stderr (the closing line) to the pipe
  auto r = run_shell("(timeout --preserve-status -s INT 4 " + streamsink::testing::streamsink_binary() +
                     " generate --device cpu --threads 1 --checkpoint " + ckpt() +
                     " --prompt 'x' --max-new-tokens -1 --ignore-eos --window 8 --sinks 2 >/dev/null)");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("interrupted"), std::string::npos) << r.output;
}

TEST_F(InferCli, ChatKeepsOneCacheAcrossRounds) {
  const std::string in = dir_->str() + "/turns.txt";
  write_file_atomic(in, "hello there\nhow are you\nbye\n");
  auto r = run_shell(streamsink::testing::streamsink_binary() + " chat --device cpu --threads 1 --checkpoint " + ckpt() +
                     " --max-new-tokens 10 --temperature 0 --window 16 < " + in);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 turns"), std::string::npos) << r.output;
}

// Ctrl-C while chat waits at its prompt ends it at once with its closing line (before session 8 the read was
// restarted: chat went on waiting, and fed the next line without a reply). stdin is a fifo held open, so only the
// signal can end the read. `set -m`: with job control on, a background job does not start with SIGINT ignored
// (which chat, like any program, leaves ignored).
TEST_F(InferCli, ChatEndsOnSigintAtItsPrompt) {
  const std::string d = dir_->str();
  const std::string script =
      "set -m; rm -f " + d + "/fifo; mkfifo " + d + "/fifo || exit 9; sleep 60 > " + d + "/fifo & holder=$!; " +
      streamsink::testing::streamsink_binary() + " chat --device cpu --threads 1 --checkpoint " + ckpt() +
      " --window 16 < " + d + "/fifo > " + d + "/chat.out 2> " + d + "/chat.err & pid=$!; " +
      "for i in $(seq 300); do grep -q \"> \" " + d + "/chat.err 2>/dev/null && break; sleep 0.1; done; " +
      "kill -INT $pid; for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; " +
      "if kill -0 $pid 2>/dev/null; then echo STILL-RUNNING; kill -9 $pid; fi; wait $pid; rc=$?; " +
      "kill $holder 2>/dev/null; cat " + d + "/chat.err; exit $rc";
  auto r = run_shell("bash -c '" + script + "'");
  EXPECT_EQ(r.output.find("STILL-RUNNING"), std::string::npos) << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chat: 0 turns"), std::string::npos) << r.output;
}

TEST_F(InferCli, InspectAttentionWritesJsonAndHeatmaps) {
  const std::string out = dir_->str() + "/attn";
  auto r = run_streamsink("inspect-attention --device cpu --checkpoint " + dir_->str() + "/ckpt_token --data " +
                          data() + " --out " + out + " --tokens 16 --samples 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto js = slurp(out + "/attention.json");
  EXPECT_NE(js.find("\"first_token_share\""), std::string::npos) << js;
  for (int l = 0; l < 2; ++l) {
    const auto png = slurp(out + "/layer_" + std::to_string(l) + ".png");
    ASSERT_GT(png.size(), 8u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
  }
}
