// ctest-labels: slow
// The infer commands through the real executable, on a checkpoint written here (tiny model, a tokenizer trained
// on tests/data): eval-stream on a shard, a data folder and a text file; generate (greedy is reproducible, a
// SIGINT stops an endless run cleanly); chat over stdin; inspect-attention; and bad input: clear errors, non-zero
// exit. Also: the default window is the model's context after the sinks, data made with another tokenizer than the
// checkpoint's is refused, and eval-stream's progress goes to stderr only.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/file_util.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/model_io.h"
#include "tests/corpus_fixture.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::RunResult;
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
  const std::string out = dir_->str() + "/made/by/eval/nll.jsonl";  // its folders are made, as mkdir -p
  auto r = run_streamsink("eval-stream --checkpoint " + ckpt() + " --data " + data() +
                          "/test_000000.bin --policy streaming --sinks 4 --window 32 --tokens 300 --chunk 16 "
                          "--block 100 --threads 1 --device cpu --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("perplexity"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos);
  EXPECT_NE(r.output.find("block    2"), std::string::npos) << r.output;
  const auto lines = slurp(out);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 299);
  EXPECT_EQ(lines.rfind("{\"i\": 1, \"token\": ", 0), 0u) << lines.substr(0, 80);  // token 0 is never scored
  const auto summary = slurp(out + ".summary.json");
  EXPECT_NE(summary.find("\"ppl\""), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"tokens\": 300"), std::string::npos) << summary;
}

// Ctrl-C (SIGINT) or kill (SIGTERM) during a long evaluation: it stops at the next chunk with 128 + the signal's
// number, says so, prints no figures, and leaves --out and its temporary file absent.
TEST_F(InferCli, EvalStreamInterruptedStopsCleanlyAndWritesNothing) {
  const std::string d = dir_->str() + "/interrupted";
  std::filesystem::create_directories(d);
  std::vector<int32_t> toks(2000000);  // minutes of evaluation: the signal comes long before the end
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>(8 + (i * 7919) % 990);
  write_shard(d + "/long.bin", toks, TokenDtype::kU16);
  for (const auto& [sig, code] : {std::pair<std::string, int>{"INT", 130}, {"TERM", 143}}) {
    const std::string out = d + "/out-" + sig;
    // The signal goes once --out's temporary file exists (the handler is installed just before it is made), not
    // after a fixed delay, which a slow start (a loaded machine, a sanitizer build) could outlast. `set -m`: a
    // background job with job control on does not start with SIGINT ignored.
    const std::string script =
        "set -m; " + streamsink::testing::streamsink_binary() + " eval-stream --checkpoint " + ckpt() + " --data " + d +
        "/long.bin --window 32 --threads 1 --device cpu --out " + out + "/nll.jsonl > " + out + ".log 2>&1 & pid=$!; "
        "for i in $(seq 1200); do ls " + out + "/nll.jsonl.tmp.* >/dev/null 2>&1 && break; sleep 0.05; done; "
        "kill -" + sig + " $pid; wait $pid; rc=$?; cat " + out + ".log; exit $rc";
    auto r = run_shell("bash -c '" + script + "'");
    EXPECT_EQ(r.exit_code, code) << r.output;
    EXPECT_NE(r.output.find("interrupted (SIG" + sig + "), stopped after "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("not written"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("perplexity"), std::string::npos) << r.output;
    EXPECT_TRUE(std::filesystem::is_directory(out)) << "--out's folder is made before the evaluation";
    EXPECT_TRUE(std::filesystem::is_empty(out)) << "a partial --out or its temporary file was left behind";
  }
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

// `--max-new-tokens -1` runs until interrupted, </s> included (issue 6). At temperature 50 the tiny model samples
// nearly uniformly, so </s> comes within a few thousand tokens: a bounded run with the same seed stops there (the
// oracle that it does come), and the endless one goes on past it until SIGINT.
TEST_F(InferCli, AnEndlessGenerationRunsPastEosAndStopsCleanlyOnSigint) {
  const std::string gen = streamsink::testing::streamsink_binary() + " generate --device cpu --threads 1 --checkpoint " +
                          ckpt() + " --prompt x --window 8 --sinks 2 --temperature 50 --seed 1";
  auto count = [](const std::string& out) {  // "generate: N tokens in ..."
    const auto at = out.rfind("generate: ");  // the closing line, not the settings line
    return at == std::string::npos ? -1LL : std::atoll(out.c_str() + at + 10);
  };
  // stdout (the text) to /dev/null, stderr (the closing line) to the pipe
  auto bounded = run_shell("(" + gen + " --max-new-tokens 100000 >/dev/null)");
  ASSERT_EQ(bounded.exit_code, 0) << bounded.output;
  const long long at_eos = count(bounded.output);
  ASSERT_GT(at_eos, 0) << bounded.output;
  ASSERT_LT(at_eos, 100000) << "no </s> in this seed's stream: the test needs one\n" << bounded.output;
  const auto in_at = bounded.output.rfind(" tokens in ");
  ASSERT_NE(in_at, std::string::npos) << bounded.output;
  const double eos_seconds = std::atof(bounded.output.c_str() + in_at + 11);
  // The signal goes once the settings line is out (the model is loaded) and three times the time the bounded run took
  // to reach </s> (plus a second) has passed, not after a fixed delay that a slow start could outlast. SIGINT is sent
  // twice at once, as `timeout -s INT` does (to the process, then to its group): a repeat that close is the same
  // request, not a second Ctrl-C that ends the process. `set -m`: a background job with job control on keeps SIGINT.
  const std::string log = dir_->str() + "/endless.log";
  auto interrupt = [&](const std::string& kills) {
    const std::string script =
        "set -m; " + gen + " --max-new-tokens -1 >/dev/null 2>" + log + " & pid=$!; "
        "for i in $(seq 1200); do grep -q \"seed 1\" " + log + " && break; sleep 0.05; done; sleep " +
        std::to_string(3 * eos_seconds + 1.0) + "; " + kills + "; wait $pid; rc=$?; cat " + log + "; exit $rc";
    return run_shell("bash -c '" + script + "'");
  };
  auto r = interrupt("kill -INT $pid; kill -INT $pid");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("interrupted"), std::string::npos) << r.output;
  EXPECT_GT(count(r.output), at_eos) << r.output;
  // SIGTERM stops it as cleanly, but with 128 + 15: `generate ... && next` must not go on as if it had finished.
  r = interrupt("kill -TERM $pid");
  EXPECT_EQ(r.exit_code, 143) << r.output;
  EXPECT_NE(r.output.find("interrupted"), std::string::npos) << r.output;
}

// The closing line's stream holds every turn's prompt (and at most 10 replies' tokens each, plus the sink prefix): a
// chat that reset its stream each round would hold the last turn alone, fewer tokens than the first two prompts.
TEST_F(InferCli, ChatKeepsOneCacheAcrossRounds) {
  const std::string in = dir_->str() + "/turns.txt";
  const std::vector<std::string> turns = {"hello there, how is the weather in the mountains today",
                                          "how are you doing with the streaming of all these tokens",
                                          "bye for now, and thank you for the long conversation"};
  std::string text;
  for (const auto& t : turns) text += t + "\n";
  write_file_atomic(in, text);
  const Tokenizer tok = Tokenizer::load(ckpt() + "/tokenizer.model");
  std::vector<int64_t> n;
  for (const auto& t : turns) n.push_back(static_cast<int64_t>(tok.encode(t + "\n").size()));
  const int64_t prompts = n[0] + n[1] + n[2], most_prefix = 5;  // <s> and up to 4 sink tokens
  ASSERT_GT(n[0] + n[1], 10 + most_prefix) << "the turns must be long enough to tell one stream from three";
  auto r = run_shell(streamsink::testing::streamsink_binary() + " chat --device cpu --threads 1 --checkpoint " + ckpt() +
                     " --max-new-tokens 10 --temperature 0 --window 16 < " + in);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("chat: 3 turns, ([0-9]+) tokens in the stream"))) << r.output;
  const int64_t seen = std::stoll(m[1].str());
  EXPECT_GE(seen, prompts) << r.output;
  EXPECT_LE(seen, prompts + 3 * 10 + most_prefix) << r.output;
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
  EXPECT_NE(js.find("\"mean_maps\""), std::string::npos);  // for scripts/plots/plot_attention.py
  for (int l = 0; l < 2; ++l) {
    const auto png = slurp(out + "/layer_" + std::to_string(l) + ".png");
    ASSERT_GT(png.size(), 8u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
  }
}

// Without --window the cache holds the model's training context, S + W = context_length (64 here): W = 60 beside the
// 4 default sinks of a vanilla model, 62 beside the 2 sink tokens of a sink: token model, 64 for the window policy,
// in the policy line printed first; an explicit --window wins. Before, the default was W = 1020 whatever the model.
TEST_F(InferCli, TheDefaultWindowIsTheModelsContextAfterTheSinks) {
  const std::string eval = "eval-stream --device cpu --threads 1 --tokens 100 --data " + data();
  auto expect_policy = [](const RunResult& r, const std::string& policy, bool by_default) {
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(policy), std::string::npos) << policy << "\n" << r.output;
    EXPECT_EQ(r.output.find("(W by default: context_length 64 - S)") != std::string::npos, by_default) << r.output;
  };
  expect_policy(run_streamsink(eval + " --checkpoint " + ckpt()), "policy streaming S=4 W=60 ", true);
  expect_policy(run_streamsink(eval + " --checkpoint " + dir_->str() + "/ckpt_token"), "policy streaming S=2 W=62 ",
                true);
  expect_policy(run_streamsink(eval + " --checkpoint " + ckpt() + " --policy window"), "policy window S=0 W=64 ", true);
  expect_policy(run_streamsink(eval + " --checkpoint " + ckpt() + " --policy recompute --sinks 1"),
                "policy recompute S=1 W=63 ", true);
  expect_policy(run_streamsink(eval + " --checkpoint " + ckpt() + " --sinks 4 --window 16"),
                "policy streaming S=4 W=16 ", false);
  // more sinks than the context leaves room for: an error that says where the window came from
  auto r = run_streamsink(eval + " --checkpoint " + ckpt() + " --sinks 40");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("context_length 64"), std::string::npos) << r.output;
  // generate and chat print their resolved policy on stderr
  const std::string bin = streamsink::testing::streamsink_binary();
  r = run_shell(bin + " generate --device cpu --threads 1 --checkpoint " + ckpt() +
                " --prompt hi --max-new-tokens 2 --temperature 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("streaming S=4 W=60 positions=cache (W by default: context_length 64 - S)"),
            std::string::npos)
      << r.output;
  r = run_shell(bin + " generate --device cpu --threads 1 --checkpoint " + ckpt() +
                " --prompt hi --max-new-tokens 2 --temperature 0 --window 8 --sinks 2");
  EXPECT_NE(r.output.find("streaming S=2 W=8 positions=cache,"), std::string::npos) << r.output;
  r = run_shell(bin + " chat --device cpu --threads 1 --checkpoint " + dir_->str() + "/ckpt_token < /dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("streaming S=2 W=62 "), std::string::npos) << r.output;
}

// A data folder's manifest.json records the checksum of the tokenizer it was prepared with: eval-stream and
// inspect-attention refuse one prepared with another tokenizer than the checkpoint's (the ids would read as other
// pieces, and before they were scored all the same when they fit the vocabulary), naming the manifest and both
// tokenizers, and so for a shard with that manifest beside it; data prepared with the checkpoint's own tokenizer
// passes.
TEST_F(InferCli, DataPreparedWithAnotherTokenizerIsRefused) {
  const std::string other = streamsink::testing::prepared_corpus();  // a 512-piece tokenizer, not the checkpoint's
  const std::string mine = dir_->str() + "/mine";
  streamsink::testing::write_synthetic_corpus(dir_->str() + "/mine-text", 12, 20);
  auto prep = run_streamsink("data prepare --tokenizer " + ckpt() + "/tokenizer.model --input " + dir_->str() +
                             "/mine-text --out " + mine + " --test-fraction 0.3");
  ASSERT_EQ(prep.exit_code, 0) << prep.output;
  const std::string ck_tok = ckpt() + "/tokenizer.model";
  const std::string recorded = read_manifest(other).tokenizer_path;
  const std::string eval = "eval-stream --device cpu --threads 1 --tokens 100 --checkpoint " + ckpt() + " --data ";
  const std::string inspect =
      "inspect-attention --device cpu --threads 1 --tokens 16 --samples 2 --out " + dir_->str() + "/attn-check" +
      " --checkpoint " + ckpt() + " --data ";
  for (const std::string& args : {eval + other, eval + other + "/test_000000.bin", inspect + other}) {
    const auto r = run_streamsink(args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    for (const std::string& want : {other + "/manifest.json", recorded, ck_tok, std::string("checksum")})
      EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
  for (const std::string& args : {eval + mine, eval + mine + "/test_000000.bin", inspect + mine}) {
    const auto r = run_streamsink(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
  }
  // Other bytes, same pieces (a field the model's reader skips, as a re-serialization could add): the id -> piece
  // tables agree with the data's own copy of its tokenizer, so the data is accepted; other data still is not.
  const std::string rebytes = dir_->str() + "/ck-rebytes";
  std::filesystem::create_directories(rebytes);
  std::filesystem::copy(ckpt(), rebytes, std::filesystem::copy_options::recursive);
  std::ofstream(rebytes + "/tokenizer.model", std::ios::binary | std::ios::app) << std::string("\xf8\x07\x01", 3);
  const std::string eval_rebytes = "eval-stream --device cpu --threads 1 --tokens 100 --checkpoint " + rebytes + " --data ";
  auto same = run_streamsink(eval_rebytes + mine);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  auto differ = run_streamsink(eval_rebytes + other);
  EXPECT_NE(differ.exit_code, 0) << differ.output;
  EXPECT_NE(differ.output.find("checksum"), std::string::npos) << differ.output;
}

// Progress of the evaluation goes to stderr, a line at each tenth of the stream when stderr is not a terminal (300
// tokens in chunks of 16: ten lines, the last one at 300/300), and stdout holds only the run's figures as before.
TEST_F(InferCli, EvalStreamProgressGoesToStderr) {
  const std::string err = dir_->str() + "/progress.err";
  const auto r = run_shell(streamsink::testing::streamsink_binary() + " eval-stream --device cpu --threads 1 "
                           "--checkpoint " + ckpt() + " --data " + data() + " --sinks 4 --window 32 --tokens 300 "
                           "--chunk 16 --block 100 2> " + err,
                           /*merge_stderr=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output << slurp(err);
  const std::string progress = slurp(err);
  EXPECT_EQ(std::count(progress.begin(), progress.end(), '\n'), 10) << progress;
  EXPECT_EQ(progress.find('\r'), std::string::npos) << progress;
  EXPECT_NE(progress.find("eval-stream: 32/300 tokens (11%)"), std::string::npos) << progress;  // 2 chunks
  EXPECT_NE(progress.find("eval-stream: 300/300 tokens (100%)"), std::string::npos) << progress;
  EXPECT_NE(progress.find("tokens/s, ppl "), std::string::npos) << progress;
  // stdout: the resolved configuration, three blocks, the figures and the table, nothing else
  std::vector<std::string> lines;
  std::istringstream in(r.output);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 13u) << r.output;
  EXPECT_EQ(lines[0].rfind("eval-stream: checkpoint ", 0), 0u) << r.output;
  EXPECT_EQ(lines[1], "  data " + data() + ": 300 tokens") << r.output;
  EXPECT_EQ(lines[2], "  policy streaming S=4 W=32 positions=cache chunk 16 block 100 threads 1 device cpu")
      << r.output;
  EXPECT_EQ(lines[3].rfind("  block    0  tokens [0, 100)  ppl ", 0), 0u) << r.output;
  EXPECT_EQ(lines[6].rfind("perplexity ", 0), 0u) << r.output;
  EXPECT_EQ(lines[7].rfind("tokens/s ", 0), 0u) << r.output;
  EXPECT_EQ(lines[8].rfind("cache bytes ", 0), 0u) << r.output;
  EXPECT_EQ(lines[9], "") << r.output;
  EXPECT_EQ(lines[10].rfind("| policy | tokens |", 0), 0u) << r.output;
  EXPECT_EQ(r.output.find("eval-stream: 300/300"), std::string::npos) << r.output;
}
