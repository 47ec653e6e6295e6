// ctest-labels: integration
// scripts/plots/plot_attention.py (the paper's Figure 2: one panel per layer, query against key position) on the
// attention.json that attention_stats_json writes for a tiny model: a PNG wider than tall (the layers side by side),
// panel titles that name the sink token for a `sink: token` model; and a clear error, exit 1, naming the file, for
// an attention.json without "mean_maps" (from an older streamsink) or none at all.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "infer/attention_stats.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using namespace streamsink::testing;

namespace {

// The attention.json of a tiny untrained model (2 layers) over windows of T tokens, written to `path`.
void write_attention_json(const std::string& path, SinkKind sink, int64_t T = 32) {
  at::set_num_threads(1);
  torch::NoGradGuard g;
  at::manual_seed(0);
  Transformer m(tiny_config(sink));
  m->eval();
  std::vector<int32_t> stream;
  for (int i = 0; i < 400; ++i) stream.push_back(8 + (i * 37) % 56);
  const auto s = collect_attention(m, stream, T, 4, 2);
  write_file_atomic(path, attention_stats_json(s, to_string(sink)));
}

RunResult plot(const std::string& json, const std::string& png, const std::string& extra = "") {
  return run_shell("'" + venv_python() + "' " + source_dir() + "/scripts/plots/plot_attention.py " + json + " " + png +
                   extra);
}

// The width and height in a PNG's IHDR chunk (after the 8-byte signature, 4 bytes of length and "IHDR").
std::pair<uint32_t, uint32_t> png_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  unsigned char h[24] = {};
  f.read(reinterpret_cast<char*>(h), sizeof h);
  EXPECT_EQ(f.gcount(), 24) << path;
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h + 1), 3), "PNG") << path;
  EXPECT_EQ(std::string(reinterpret_cast<char*>(h + 12), 4), "IHDR") << path;
  const auto be32 = [&](int at) {
    return (uint32_t(h[at]) << 24) | (uint32_t(h[at + 1]) << 16) | (uint32_t(h[at + 2]) << 8) | uint32_t(h[at + 3]);
  };
  return {be32(16), be32(20)};
}

}  // namespace

TEST(PlotAttention, DrawsTheLayersSideBySide) {
  TempDir dir;
  const std::string json = dir.str() + "/attention.json", png = dir.str() + "/attention.png";
  write_attention_json(json, SinkKind::kNone);
  auto r = plot(json, png);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layer 0: first token "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layer 1: first token "), std::string::npos) << r.output;
  const auto [w, h] = png_size(png);
  EXPECT_GT(h, 0u);
  EXPECT_GT(w, h) << "two panels side by side";

  // the linear scale, a title, and a sink-token model, whose first position is its sink token
  write_attention_json(json, SinkKind::kToken);
  r = plot(json, png, " --linear --title 'sink=token'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layer 0: sink token "), std::string::npos) << r.output;
  const auto [w2, h2] = png_size(png);
  EXPECT_GT(w2, h2);
}

TEST(PlotAttention, AnOldOrMissingJsonIsAClearErrorNamingTheFile) {
  TempDir dir;
  const std::string json = dir.str() + "/attention.json", png = dir.str() + "/attention.png";
  write_attention_json(json, SinkKind::kNone, 12);
  auto j = nlohmann::json::parse(streamsink::read_file(json));
  j.erase("mean_maps");  // what inspect-attention wrote before the maps were in the JSON
  write_file_atomic(json, j.dump(2));
  auto r = plot(json, png);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(json), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mean_maps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rerun `streamsink inspect-attention`"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(png));

  const std::string missing = dir.str() + "/no-such/attention.json";
  r = plot(missing, png);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(missing), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;

  write_file_atomic(json, "{\"mean_maps\": [[1, 2], [3]]");  // cut short
  r = plot(json, png);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(json), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Traceback"), std::string::npos) << r.output;
}
