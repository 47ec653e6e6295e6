// safetensors: round trip, the byte layout, and corrupted files rejected with a message (never read out of bounds).
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <cstring>
#include <fstream>

#include "common/error.h"
#include "common/file_util.h"
#include "model/model_io.h"
#include "model/safetensors.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
using streamsink::testing::TempDir;

namespace {

void write_raw(const std::string& path, const std::string& header_json, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
  f << header_json << data;
}

std::string error_of(const std::string& path) {
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtype) {
  TempDir dir;
  TensorMap t = {{"a", at::randn({3, 4})},
                 {"b", at::randn({5}).to(at::kBFloat16)},
                 {"c", at::randn({2, 2, 2}).to(at::kHalf)},
                 {"d", at::arange(7, at::kLong)},
                 {"e", at::zeros({0, 3})}};
  const auto path = dir.str() + "/x.safetensors";
  save_safetensors(path, t, {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  auto back = load_safetensors(path, &meta);
  ASSERT_EQ(back.size(), t.size());
  for (const auto& [k, v] : t) {
    EXPECT_EQ(back[k].scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(at::equal(back[k], v)) << k;
  }
  EXPECT_EQ(meta["format"], "pt");
}

TEST(Safetensors, LayoutIsLengthThenJsonThenData) {
  TempDir dir;
  const auto path = dir.str() + "/x.safetensors";
  save_safetensors(path, {{"w", at::tensor({1.0f, 2.0f})}});
  auto bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.substr(8, n).rfind(R"({"w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})", 0), 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 8);
  float v[2];
  std::memcpy(v, bytes.data() + 8 + n, 8);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 2.0f);
}

TEST(Safetensors, CorruptFilesAreRejectedWithAMessage) {
  TempDir dir;
  const auto p = dir.str() + "/bad.safetensors";
  EXPECT_NE(error_of(dir.str() + "/missing.safetensors").find("cannot open"), std::string::npos);
  write_raw(p, "", "");
  EXPECT_NE(error_of(p).find("header is not valid JSON"), std::string::npos) << error_of(p);
  { std::ofstream(p, std::ios::binary) << "abc"; }
  EXPECT_NE(error_of(p).find("truncated"), std::string::npos);
  { std::ofstream f(p, std::ios::binary); f.write("\xff\xff\xff\xff\x00\x00\x00\x00", 8); }
  EXPECT_NE(error_of(p).find("larger than the file"), std::string::npos) << error_of(p);
  write_raw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  EXPECT_NE(error_of(p).find("fall outside"), std::string::npos) << error_of(p);
  write_raw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", std::string(16, '\0'));
  EXPECT_NE(error_of(p).find("need 12 bytes"), std::string::npos) << error_of(p);
  write_raw(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, '\0'));
  EXPECT_NE(error_of(p).find("overlap"), std::string::npos) << error_of(p);
  write_raw(p, R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0'));
  EXPECT_NE(error_of(p).find("unsupported dtype"), std::string::npos) << error_of(p);
  write_raw(p, R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_NE(error_of(p).find("non-negative"), std::string::npos) << error_of(p);
  write_raw(p, R"([1,2,3])", "");
  EXPECT_NE(error_of(p).find("not a JSON object"), std::string::npos) << error_of(p);
}

// Every parameter random (a fresh model's norms are all 1 and its sinks 0: swapped norm names, or sinks never
// copied, would load the same), both with a tied head and without.
TEST(ModelIo, SaveThenLoadGivesIdenticalTensorsAndLogits) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    TempDir dir;
    auto cfg = streamsink::testing::tiny_config(SinkKind::kLogit);
    cfg.tie_embeddings = tied;
    Transformer m(cfg);
    {
      torch::NoGradGuard g;
      for (auto& p : m->parameters()) p.normal_(0.0, 0.5);
    }
    YAML::Node root;
    YAML::Node mn;
    model_config_to_yaml(cfg, mn);
    root["model"] = mn;
    write_file_atomic(dir.str() + "/config.yaml", YAML::Dump(root));
    save_model_weights(dir.str(), m);
    auto back = load_model(dir.str());
    auto a = m->named_parameters(), b = back->named_parameters();
    for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
    m->eval();
    auto x = at::randint(8, 64, {1, 10}, at::kLong);
    EXPECT_TRUE(at::equal(m->forward(x), back->forward(x)));
  }
}

// Integer tensors where weights belong were converted to float without a word (review, session 16).
TEST(ModelIo, IntegerTensorsInPlaceOfWeightsAreAnError) {
  TempDir dir;
  auto cfg = streamsink::testing::tiny_config();
  Transformer m(cfg);
  YAML::Node root, mn;
  model_config_to_yaml(cfg, mn);
  root["model"] = mn;
  write_file_atomic(dir.str() + "/config.yaml", YAML::Dump(root));
  TensorMap w;
  for (const auto& p : m->named_parameters()) w[p.key()] = p.value().detach().clone();
  w["model.norm.weight"] = w["model.norm.weight"].to(at::kLong);
  save_safetensors(dir.str() + "/model.safetensors", w);
  streamsink::testing::expect_error([&] { load_model(dir.str()); },
                                    {"model.safetensors", "'model.norm.weight'", "Long", "not floating-point"});
}

TEST(ModelIo, AConfigThatDoesNotMatchTheWeightsIsAnError) {
  TempDir dir;
  auto cfg = streamsink::testing::tiny_config();
  Transformer m(cfg);
  save_model_weights(dir.str(), m);
  cfg.dim = 64;
  YAML::Node root, mn;
  model_config_to_yaml(cfg, mn);
  root["model"] = mn;
  write_file_atomic(dir.str() + "/config.yaml", YAML::Dump(root));
  try {
    load_model(dir.str());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
  }
}
