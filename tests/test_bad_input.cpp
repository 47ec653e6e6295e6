// ctest-labels: faults integration
// Bad input, table-driven, through the real executable: broken YAML configs, shards, checkpoints, tokenizer files
// and out-of-range flags across commands. Each must end with exit code 1 or 2 (never a signal or abort), print a
// message naming the file or the key/flag, and leave every existing file of the test folder as it was.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "data/shard.h"
#include "model/safetensors.h"
#include "tests/corpus_fixture.h"
#include "tests/fault_helpers.h"

using namespace streamsink;
using namespace streamsink::testing;
namespace fs = std::filesystem;

namespace {

struct Paths {
  std::string ck;    // a good checkpoint folder (2 tiny steps)
  std::string data;  // the prepared corpus (shards + tokenizer.model + manifest.json)
  std::string cfg;   // configs/tiny.yaml
};

struct Case {
  std::string name;
  std::function<void(const fs::path& d, const Paths& p)> setup;  // writes the bad input into the case folder d
  std::string args;                                              // {D} case folder, {CK} {DATA} {CFG} as in Paths
  std::vector<std::string> expect;                               // substrings of the output ({D} etc. expanded)
  bool cli11 = false;  // rejected by CLI11's own parser (see kAcceptCli11Codes)
};

// CLI11's parse errors (a flag that does not convert, fails its check, or is unknown) exit with CLI11's codes
// 100-114 (ConversionError 104, ValidationError 105, ExtrasError 109), not the house's 1 or 2: app/main.cpp would
// have to map them (`rc >= 100 && rc < 128 ? 2 : rc`). Until it does, those cases accept them (reported, not hidden).
constexpr bool kAcceptCli11Codes = false;

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string shard_bytes(int32_t magic, int32_t version, int32_t n_tokens, size_t body_bytes) {
  std::string s(1024 + body_bytes, '\0');
  int32_t h[3] = {magic, version, n_tokens};
  std::memcpy(s.data(), h, sizeof h);
  for (size_t i = 0; i < body_bytes; ++i) s[1024 + i] = static_cast<char>(i % 7);
  return s;
}

std::string yaml_with(const std::string& model_extra, const std::string& train_extra) {
  return "model:\n  vocab_size: 512\n  dim: 64\n  n_layers: 1\n  n_heads: 4\n  n_kv_heads: 2\n  context_length: 64\n" +
         model_extra + "train:\n  data_dir: nowhere\n  steps: 2\n" + train_extra;
}

void copy_ck(const Paths& p, const fs::path& to) {
  fs::create_directories(to);
  fs::copy(p.ck, to, fs::copy_options::recursive);
}

std::string expand(std::string s, const fs::path& d, const Paths& p) {
  const std::pair<std::string, std::string> subs[] = {{"{D}", d.string()}, {"{CK}", p.ck}, {"{DATA}", p.data}, {"{CFG}", p.cfg}};
  for (const auto& [k, v] : subs)
    for (size_t at = s.find(k); at != std::string::npos; at = s.find(k, at + v.size())) s.replace(at, k.size(), v);
  return s;
}

// A safetensors file whose JSON header is `header`, followed by `data` bytes.
std::string safetensors_bytes(const std::string& header, size_t data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + std::string(data, '\0');
}

std::vector<Case> cases() {
  auto yaml_case = [](std::string name, std::string yaml, std::vector<std::string> expect) {
    expect.push_back("{D}/c.yaml");
    return Case{std::move(name), [yaml](const fs::path& d, const Paths&) { write(d / "c.yaml", yaml); },
                "train {D}/c.yaml --out {D}/run", std::move(expect)};
  };
  auto shard_case = [](std::string name, std::string bytes, std::vector<std::string> expect) {
    expect.push_back("{D}/train_000000.bin");
    return Case{std::move(name), [bytes](const fs::path& d, const Paths&) { write(d / "train_000000.bin", bytes); },
                "data inspect {D}/train_000000.bin", std::move(expect)};
  };
  auto ck_case = [](std::string name, std::function<void(const fs::path&)> corrupt, std::string args,
                    std::vector<std::string> expect) {
    return Case{std::move(name),
                [corrupt](const fs::path& d, const Paths& p) {
                  copy_ck(p, d / "ck");
                  corrupt(d / "ck");
                },
                std::move(args), std::move(expect)};
  };
  const std::string gen = "generate --checkpoint {D}/ck --prompt hello --max-new-tokens 4";
  const std::string gen_good = "generate --checkpoint {CK} --prompt hello";
  const std::string eval_good = "eval-stream --checkpoint {CK} --data {DATA} --tokens 64";
  const std::string resume = "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=4 "
                             "--out {D}/run --resume {D}/ck";
  auto none = [](const fs::path&, const Paths&) {};
  // A checkpoint whose model.safetensors is a JSON header and `data` bytes, loaded by `generate`.
  auto weights_case = [&](std::string name, std::string header, size_t data, std::string expect) {
    return ck_case(
        std::move(name),
        [header, data](const fs::path& ck) { write(ck / "model.safetensors", safetensors_bytes(header, data)); }, gen,
        {"{D}/ck/model.safetensors", std::move(expect)});
  };

  // A checkpoint whose config.yaml describes a model no machine holds (445 TiB of float32 parameters) beside its tiny
  // weights: refused before the model is built, naming the file (LibTorch's allocator would abort the process).
  auto huge_model = [](const fs::path& ck) {
    std::string y = slurp((ck / "config.yaml").string());
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"\n  dim: 64\n", "\n  dim: 4194304\n"},
                                   {"vocab_size: 512\n", "vocab_size: 4000000\n"}}) {
      const auto at = y.find(from);
      ASSERT_NE(at, std::string::npos) << from << " in\n" << y;
      y.replace(at, from.size(), to);
    }
    write(ck / "config.yaml", y);
  };
  const std::vector<std::string> huge_model_expect = {"{D}/ck/config.yaml: loading this checkpoint's model needs",
                                                      "float32 parameters", "this process can use", "dim 4194304",
                                                      "{D}/ck/model.safetensors holds only"};

  std::vector<Case> c = {
      // ---- YAML run configs ----
      yaml_case("yaml_syntax", "model: {dim: 64\n", {"not valid YAML"}),
      yaml_case("yaml_wrong_type", yaml_with("  dim: sixty\n", ""), {"key 'dim'", "expected an integer"}),
      yaml_case("yaml_unknown_key", yaml_with("  dimm: 64\n", ""), {"unknown key 'dimm'"}),
      yaml_case("yaml_unknown_section", "modle:\n  dim: 64\n", {"unknown section 'modle'"}),
      yaml_case("yaml_negative_dim", yaml_with("  hidden_dim: -5\n", ""), {"model.hidden_dim"}),
      yaml_case("yaml_heads_not_dividing", "model:\n  dim: 64\n  n_heads: 5\ntrain:\n  data_dir: x\n  steps: 1\n",
                {"model.n_heads"}),
      yaml_case("yaml_kv_heads_not_dividing", "model:\n  dim: 64\n  n_heads: 4\n  n_kv_heads: 3\ntrain:\n  data_dir: x\n  steps: 1\n",
                {"model.n_kv_heads"}),
      yaml_case("yaml_zero_batch", yaml_with("", "  batch_size: 0\n"), {"train.batch_size"}),
      yaml_case("yaml_seq_len_too_long", yaml_with("", "  seq_len: 4096\n"), {"train.seq_len", "context_length"}),
      yaml_case("yaml_bad_enum", yaml_with("", "  nan_policy: maybe\n"), {"train.nan_policy"}),
      yaml_case("yaml_top_level_list", "- model\n- train\n", {"expected a map"}),
      yaml_case("yaml_section_scalar", "model: 5\ntrain:\n  data_dir: x\n  steps: 1\n", {"model"}),
      yaml_case("yaml_int_overflow", yaml_with("", "  tokens: 99999999999999999999999\n"), {"tokens"}),
      yaml_case("yaml_float_for_int", yaml_with("  dim: 64.5\n", ""), {"dim"}),
      yaml_case("yaml_nested_value", yaml_with("", "  lr: {a: 1}\n"), {"lr"}),
      yaml_case("yaml_control_char_in_path", yaml_with("", "  tokenizer: tok\r   # a lone CR\n"),
                {"key 'tokenizer'", "control character"}),  // found by fuzz_config: a lone CR broke the round trip
      yaml_case("yaml_keep_zero", yaml_with("", "  keep_checkpoints: 0\n"), {"train.keep_checkpoints"}),
      yaml_case("yaml_eval_sequences_zero", yaml_with("", "  eval_sequences: 0\n"), {"train.eval_sequences"}),
      // the key eval_sequences replaced: the error says what to write for the same set (3 x batch_size 8)
      yaml_case("yaml_retired_eval_batches", yaml_with("", "  eval_batches: 3\n"),
                {"train.eval_batches", "replaced by train.eval_sequences", "eval_sequences: 24"}),
      {"set_retired_eval_batches", none, "train {CFG} --set train.eval_batches=2 --out {D}/run",
       {"train.eval_batches", "train.eval_sequences"}},
      yaml_case("yaml_sink_window_whole_sequence", yaml_with("", "  seq_len: 64\n  sink_window: 64\n"),
                {"train.sink_window 64", "< seq_len (64)"}),
      yaml_case("yaml_sink_window_default_too_small", yaml_with("", "  seq_len: 8\n"),
                {"train.sink_window", "seq_len / 2 (the default) is 4"}),
      // a model too large to train here: an Error naming the config, before the model is built
      {"train_model_too_large", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set model.dim=4194304 --out {D}/run",
       {"{CFG}: training this model on cpu needs", "float32 parameters", "for their gradients",
        "for AdamW's two moments", "this process can use", "dim 4194304"}},
      {"set_bad_value", none, "train {CFG} --set train.steps=abc --out {D}/run", {"train.steps", "abc"}},
      {"set_unknown_key", none, "train {CFG} --set train.nope=1 --out {D}/run", {"train.nope"}},
      {"set_no_section", none, "train {CFG} --set steps=3 --out {D}/run", {"steps=3"}},
      {"train_missing_data_dir", none, "train {CFG} --set train.data_dir={D}/nope --out {D}/run", {"{D}/nope"}},
      // sink: token ids past the tokenizer's reserved sink symbols (4 by default) would be text pieces
      {"train_sink_ids_not_reserved", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set model.sink=token "
       "--set model.sink_tokens=5 --out {D}/run",
       {"{DATA}/tokenizer.model", "model.sink_tokens = 5", "id 8 is the tokenizer's piece"}},
      {"train_sink_id_in_data_without_tokenizer",
       [](const fs::path& d, const Paths&) {
         fs::create_directories(d / "data");
         std::vector<int32_t> toks(4096);
         for (size_t i = 0; i < toks.size(); ++i) toks[i] = 8 + static_cast<int32_t>(i % 200);
         toks[100] = 4;  // the sink's id, as plain data
         streamsink::write_shard((d / "data" / "train_000000.bin").string(), toks, streamsink::TokenDtype::kU16);
         streamsink::write_shard((d / "data" / "val_000000.bin").string(), toks, streamsink::TokenDtype::kU16);
       },
       "train {CFG} --set train.data_dir={D}/data --set model.vocab_size=512 --set model.sink=token --out {D}/run",
       {"{D}/data/train_000000.bin", "holds 1 token(s) with the ids that model.sink_token_id = 4"}},
      {"train_sink_id_is_bos", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set model.sink=token "
       "--set model.sink_token_id=1 --out {D}/run",
       {"{DATA}/tokenizer.model", "model.sink_token_id = 1"}},
      // train.tokenizer goes into every checkpoint: checked before the first step, not found out by generate
      {"train_tokenizer_missing", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.tokenizer={D}/nope.model "
       "--out {D}/run",
       {"{D}/nope.model", "no such file"}},
      {"train_tokenizer_is_a_folder", [](const fs::path& d, const Paths&) { fs::create_directories(d / "tokdir"); },
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.tokenizer={D}/tokdir "
       "--out {D}/run",
       {"{D}/tokdir"}},
      {"train_tokenizer_is_text", [](const fs::path& d, const Paths&) { write(d / "notes.txt", "hello world\n"); },
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.tokenizer={D}/notes.txt "
       "--out {D}/run",
       {"{D}/notes.txt", "not a sentencepiece model"}},
      {"train_tokenizer_not_the_datas",
       [](const fs::path& d, const Paths&) {
         std::string text;
         for (int i = 0; i < 400; ++i) text += "another corpus line number " + std::to_string(i) + " with words\n";
         write(d / "text" / "a.txt", text);
         auto r = run_streamsink("tokenizer train --input " + (d / "text").string() + " --vocab-size 300 --out " +
                                 (d / "other.model").string());
         ASSERT_EQ(r.exit_code, 0) << r.output;
       },
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.tokenizer={D}/other.model "
       "--out {D}/run",
       {"{DATA}/manifest.json", "prepared with tokenizer", "{D}/other.model"}},
      {"train_config_is_a_folder", [](const fs::path& d, const Paths&) { fs::create_directories(d / "cfgdir"); },
       "train {D}/cfgdir --out {D}/run", {"{D}/cfgdir", "is a folder"}},
      {"train_stop_after_behind_the_checkpoint", [](const fs::path& d, const Paths& p) { copy_ck(p, d / "ck"); },
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=4 --resume {D}/ck "
       "--out {D}/run --stop-after 1",
       {"--stop-after 1", "already at step 2"}},
      {"flag_threads_negative", none, "eval-stream --checkpoint {CK} --data {DATA} --tokens 64 --threads -3",
       {"--threads"}, true},
      {"flag_stop_after_zero", none, "train {CFG} --out {D}/run --stop-after 0", {"--stop-after"}, true},
      {"train_vocab_smaller_than_data", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=100 --set train.steps=2 --out {D}/run",
       {"manifest.json", "the data's tokenizer has 512 pieces, more than model.vocab_size = 100"}},
      {"train_val_split_without_a_window", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=2 "
       "--set model.context_length=8192 --set train.seq_len=8192 --set train.batch_size=1 --out {D}/run",
       {"{DATA}", "the val split has", "not one window of 8193"}},
      {"train_split_smaller_than_a_batch", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=2 "
       "--set train.batch_size=4096 --out {D}/run",
       {"{DATA}", "the train split has", "fewer than one global batch"}},
      // ---- shards ----
      shard_case("shard_truncated_tokens", shard_bytes(20240520, 1, 100, 100), {"truncated or corrupt shard"}),
      shard_case("shard_shorter_than_header", std::string(100, 'x'), {"shorter than the 1024-byte header"}),
      shard_case("shard_empty", "", {"shorter than the 1024-byte header"}),
      shard_case("shard_bad_magic", shard_bytes(12345, 1, 4, 8), {"bad magic 12345"}),
      shard_case("shard_bad_version", shard_bytes(20240520, 7, 4, 8), {"unsupported shard version 7"}),
      shard_case("shard_u32_sized_as_u16", shard_bytes(20240801, 1, 50, 100), {"truncated or corrupt shard"}),
      shard_case("shard_negative_count", shard_bytes(20240520, 1, -5, 0), {"negative token count"}),
      shard_case("shard_text_file", std::string(2000, 'a'), {"bad magic"}),
      {"shard_ids_outside_tokenizer",
       [](const fs::path& d, const Paths&) {
         std::string s = shard_bytes(20240520, 1, 4, 8);
         const uint16_t big[4] = {1, 2, 60000, 3};
         std::memcpy(s.data() + 1024, big, 8);
         write(d / "train_000000.bin", s);
       },
       "data inspect {D}/train_000000.bin --tokenizer {DATA}/tokenizer.model", {"{D}/train_000000.bin", "60000"}},
      // an id past the tokenizer's vocabulary where --show does not reach: the whole shard is scanned
      {"shard_late_id_outside_tokenizer",
       [](const fs::path& d, const Paths&) {
         std::vector<int32_t> ids(1000, 9);
         ids[900] = 600;
         write_shard((d / "train_000000.bin").string(), ids, TokenDtype::kU16);
       },
       "data inspect {D}/train_000000.bin --tokenizer {DATA}/tokenizer.model --show 4",
       {"{D}/train_000000.bin", "holds token id 600, outside the 512 pieces of {DATA}/tokenizer.model"}},
      // a shard with its manifest.json beside it, decoded with another tokenizer than the manifest's (one whose
      // vocabulary holds every id, so only the manifest tells): refused as the folder is (and as eval-stream refuses
      // it), naming the manifest and both tokenizers
      {"shard_inspected_with_another_tokenizer",
       [](const fs::path& d, const Paths&) {
         write_synthetic_corpus(d / "text", 20, 20);
         auto r = run_streamsink("tokenizer train --input " + (d / "text").string() + " --vocab-size 600 --out " +
                                 (d / "other.model").string());
         ASSERT_EQ(r.exit_code, 0) << r.output;
       },
       "data inspect {DATA}/val_000000.bin --tokenizer {D}/other.model",
       {"{DATA}/manifest.json", "{D}/other.model", "is a different one (checksum"}},
      {"train_on_a_truncated_shard",
       [](const fs::path& d, const Paths& p) {
         fs::copy(p.data, d / "data", fs::copy_options::recursive);
         fs::resize_file(d / "data" / "train_000000.bin", 1024 + 301);
       },
       "train {CFG} --set train.data_dir={D}/data --set model.vocab_size=512 --set train.steps=2 --out {D}/run",
       {"{D}/data/train_000000.bin"}},
      {"data_dir_bad_manifest", [](const fs::path& d, const Paths& p) {
         fs::copy(p.data, d / "data", fs::copy_options::recursive);
         write(d / "data" / "manifest.json", "{\"format\": \"streamsink-shards\", \"vocab_size\": [}");
       },
       "data inspect {D}/data", {"{D}/data/manifest.json"}},
      {"eval_stream_on_a_bad_shard",
       [](const fs::path& d, const Paths&) { write(d / "test_000000.bin", shard_bytes(20240520, 3, 4, 8)); },
       "eval-stream --checkpoint {CK} --data {D}/test_000000.bin", {"{D}/test_000000.bin", "version 3"}},
      // ---- checkpoints ----
      ck_case("ck_missing_weights", [](const fs::path& ck) { fs::remove(ck / "model.safetensors"); }, gen, {"{D}/ck"}),
      ck_case("ck_truncated_weights",
              [](const fs::path& ck) { fs::resize_file(ck / "model.safetensors", fs::file_size(ck / "model.safetensors") / 2); },
              gen, {"{D}/ck/model.safetensors", "truncated"}),
      ck_case("ck_weights_4_bytes", [](const fs::path& ck) { write(ck / "model.safetensors", "abcd"); }, gen,
              {"{D}/ck/model.safetensors", "truncated"}),
      ck_case("ck_weights_header_too_long",
              [](const fs::path& ck) { write(ck / "model.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10)); },
              gen, {"{D}/ck/model.safetensors", "header length"}),
      ck_case("ck_weights_bad_json", [](const fs::path& ck) { write(ck / "model.safetensors", safetensors_bytes("{\"a\": [1,", 0)); },
              gen, {"{D}/ck/model.safetensors", "not valid JSON"}),
      weights_case("ck_weights_bad_dtype",
                   R"({"model.embed_tokens.weight":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", 2,
                   "unsupported dtype 'Q4'"),
      weights_case("ck_weights_offsets_outside", R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
                   "outside"),
      weights_case("ck_weights_overflowing_shape",
                   R"({"x":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", 8, "tensor 'x'"),
      // numel 0 passed the overflow check; the dim cast to -1
      weights_case("ck_weights_zero_hides_a_huge_dimension",
                   R"({"x":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", 0,
                   "tensor 'x': shape overflows"),
      // each dimension under 2^62, their product not: with a 0 the element count passed (review, session 16)
      weights_case("ck_weights_zero_hides_huge_dimensions",
                   R"({"x":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", 0,
                   "tensor 'x': shape overflows"),
      ck_case("ck_weights_a_directory",
              [](const fs::path& ck) {
                fs::remove(ck / "model.safetensors");
                fs::create_directories(ck / "model.safetensors");
              },
              gen, {"{D}/ck/model.safetensors"}),
      // a [0,16) and c [8,12) overlap, with the empty b [4,4) sorted between them
      weights_case("ck_weights_overlapping_tensors",
                   R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                   R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                   R"("c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   16, "overlap"),
      ck_case("ck_weights_missing_tensor",
              [](const fs::path& ck) {
                auto t = load_safetensors((ck / "model.safetensors").string());
                t.erase(t.begin());
                save_safetensors((ck / "model.safetensors").string(), t);
              },
              gen, {"{D}/ck/model.safetensors", "is missing"}),
      ck_case("ck_config_does_not_match_weights",
              [](const fs::path& ck) {
                std::string y = slurp((ck / "config.yaml").string());
                const auto at = y.find("dim: 64");
                y.replace(at, 7, "dim: 32");
                write(ck / "config.yaml", y);
              },
              gen, {"{D}/ck/model.safetensors", "config"}),
      ck_case("ck_config_model_too_large_generate", huge_model, gen, huge_model_expect),
      ck_case("ck_config_model_too_large_eval_stream", huge_model,
              "eval-stream --checkpoint {D}/ck --data {DATA} --tokens 64", huge_model_expect),
      ck_case("ck_config_model_too_large_export_hf", huge_model, "export-hf --checkpoint {D}/ck --out {D}/hf",
              huge_model_expect),
      ck_case("ck_config_garbage", [](const fs::path& ck) { write(ck / "config.yaml", "model: [\n  : :\n"); }, gen,
              {"{D}/ck/config.yaml", "not valid YAML"}),
      ck_case("ck_config_no_model_section", [](const fs::path& ck) { write(ck / "config.yaml", "train:\n  steps: 3\n"); },
              gen, {"{D}/ck/config.yaml", "model:"}),
      {"resume_past_the_budget", none,
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=1 --out {D}/run "
       "--resume {CK}",
       {"{CK}", "is at step 2, past this run's budget of 1 steps"}},
      ck_case("ck_state_bad_json", [](const fs::path& ck) { write(ck / "state.json", "{\"step\": 2, \"tokens"); }, resume,
              {"{D}/ck/state.json"}),
      ck_case("ck_state_wrong_types", [](const fs::path& ck) { write(ck / "state.json", "{\"step\": \"two\"}"); }, resume,
              {"{D}/ck/state.json"}),
      ck_case("ck_state_missing", [](const fs::path& ck) { fs::remove(ck / "state.json"); }, resume, {"{D}/ck/state.json"}),
      ck_case("ck_optimizer_truncated",
              [](const fs::path& ck) {
                fs::resize_file(ck / "optimizer.safetensors", fs::file_size(ck / "optimizer.safetensors") - 100);
              },
              resume, {"{D}/ck/optimizer.safetensors"}),
      ck_case("ck_optimizer_missing", [](const fs::path& ck) { fs::remove(ck / "optimizer.safetensors"); }, resume,
              {"{D}/ck/optimizer.safetensors"}),
      ck_case("ck_rng_state_corrupt",
              [](const fs::path& ck) {
                auto o = streamsink::load_safetensors((ck / "optimizer.safetensors").string());
                o["rng.cpu"] = at::zeros({3}, at::kByte);  // not a generator state
                streamsink::save_safetensors((ck / "optimizer.safetensors").string(), o);
              },
              resume, {"{D}/ck/optimizer.safetensors", "rng.cpu is not a generator state"}),
      {"run_latest_names_a_missing_step",
       [](const fs::path& d, const Paths&) { write(d / "run" / "checkpoints" / "latest", "step_0000099\n"); },
       "eval-stream --checkpoint {D}/run --data {DATA} --tokens 64", {"{D}/run/checkpoints/latest", "step_0000099"}},
      {"resume_auto_with_broken_latest",
       [](const fs::path& d, const Paths&) { write(d / "run" / "checkpoints" / "latest", "step_0000099\n"); },
       "train {CFG} --set train.data_dir={DATA} --set model.vocab_size=512 --set train.steps=2 --out {D}/run --resume auto",
       {"{D}/run/checkpoints/latest"}},
      {"no_such_checkpoint", none, "eval-stream --checkpoint {D}/nothing --data {DATA}", {"{D}/nothing"}},
      // ---- tokenizer files ----
      {"tok_garbage_generate", [](const fs::path& d, const Paths&) { write(d / "garbage.model", std::string(500, '\x17')); },
       gen_good + " --max-new-tokens 4 --tokenizer {D}/garbage.model", {"{D}/garbage.model", "not a sentencepiece model"}},
      {"tok_empty_generate", [](const fs::path& d, const Paths&) { write(d / "empty.model", ""); },
       gen_good + " --max-new-tokens 4 --tokenizer {D}/empty.model", {"{D}/empty.model"}},
      {"tok_garbage_in_checkpoint",
       [](const fs::path& d, const Paths& p) {
         copy_ck(p, d / "ck");
         write(d / "ck" / "tokenizer.model", "\x0a\x05hello garbage that is not protobuf");
       },
       gen, {"{D}/ck/tokenizer.model"}},
      {"tok_garbage_data_inspect", [](const fs::path& d, const Paths&) { write(d / "garbage.model", "not a model"); },
       "data inspect {DATA}/val_000000.bin --tokenizer {D}/garbage.model", {"{D}/garbage.model"}},
      {"tok_garbage_eval_text",
       [](const fs::path& d, const Paths&) {
         write(d / "garbage.model", std::string(64, '\xff'));
         write(d / "text.txt", "some text to evaluate on\n");
       },
       "eval-stream --checkpoint {CK} --data {D}/text.txt --tokenizer {D}/garbage.model", {"{D}/garbage.model"}},
      // ---- eval-stream data that is neither shard nor text, too short, and an output that cannot be written ----
      {"eval_binary_data",
       [](const fs::path& d, const Paths&) { write(d / "garbage.dat", std::string("\x01\x00\xfe\x00binary", 10)); },
       "eval-stream --checkpoint {CK} --data {D}/garbage.dat", {"{D}/garbage.dat", "neither a token shard nor text"}},
      {"eval_bin_without_shard_header", [](const fs::path& d, const Paths&) { write(d / "x.bin", "hello there\n"); },
       "eval-stream --checkpoint {CK} --data {D}/x.bin", {"{D}/x.bin", "no token-shard header"}},
      {"eval_empty_text", [](const fs::path& d, const Paths&) { write(d / "empty.txt", ""); },
       "eval-stream --checkpoint {CK} --data {D}/empty.txt", {"{D}/empty.txt", "yields 0 tokens"}},
      // A missing folder is made (as mkdir -p); one that cannot be made, under a file, is refused before the run.
      {"eval_out_folder_uncreatable", [](const fs::path& d, const Paths&) { write(d / "afile", "x"); },
       eval_good + " --out {D}/afile/sub/nll.jsonl", {"{D}/afile/sub/nll.jsonl", "cannot create its folder"}},
      {"tok_garbage_data_prepare",
       [](const fs::path& d, const Paths&) {
         write(d / "garbage.model", "garbage");
         write(d / "text" / "a.txt", "hello world\n");
       },
       "data prepare --tokenizer {D}/garbage.model --input {D}/text --out {D}/out", {"{D}/garbage.model"}},
      {"tok_train_missing_input", none, "tokenizer train --input {D}/nope --vocab-size 512 --out {D}/t.model", {"{D}/nope"}},
      {"tok_train_missing_input_new_out_folder", none,
       "tokenizer train --input {D}/nope --vocab-size 512 --out {D}/new/sub/t.model", {"{D}/nope"}},
      {"tok_train_vocab_too_small", [](const fs::path& d, const Paths&) { write(d / "text" / "a.txt", "hello world\n"); },
       "tokenizer train --input {D}/text --vocab-size 10 --out {D}/t.model", {"{D}/t.model", "vocab size 10"}},
      // ---- flags out of range ----
      {"flag_temperature", none, gen_good + " --max-new-tokens 4 --temperature -1", {"--temperature"}},
      {"flag_top_p", none, gen_good + " --max-new-tokens 4 --top-p 1.5", {"--top-p"}},
      {"flag_max_new_tokens", none, gen_good + " --max-new-tokens -5", {"--max-new-tokens"}},
      {"flag_positions", none, gen_good + " --max-new-tokens 4 --positions sideways", {"--positions"}},
      {"flag_window_zero", none, eval_good + " --window 0", {"--window"}},
      // a cache larger than the machine: an error before the allocation (which aborts the process on a CPU)
      {"flag_window_huge", none, eval_good + " --window 1000000000000000", {"--window", "KV cache would need"}},
      // (under streaming a chunk is capped at W, so only dense takes it whole)
      {"flag_chunk_huge", none, eval_good + " --policy dense --chunk 9223372036854775000", {"--chunk", "KV cache would need"}},
      {"flag_window_huge_generate", none, gen_good + " --max-new-tokens 4 --window 1000000000000", {"--window"}},
      {"flag_policy", none, eval_good + " --policy bogus", {"--policy"}},
      {"flag_tokens_zero", none, eval_good.substr(0, eval_good.find(" --tokens")) + " --tokens 0", {"--tokens"}},
      {"flag_chunk_zero", none, eval_good + " --chunk 0", {"--chunk"}},
      {"flag_sinks_negative", none, eval_good + " --sinks -3", {"--sinks"}},
      {"flag_sinks_minus_one", none, eval_good + " --sinks -1", {"--sinks"}},
      {"flag_window_minus_one", none, eval_good + " --window -1", {"--window"}},
      {"flag_window_minus_one_generate", none, gen_good + " --max-new-tokens 4 --window -1", {"--window"}},
      {"flag_block_zero", none, eval_good + " --block 0", {"--block"}},
      {"flag_sinks_larger_than_window", none, eval_good + " --sinks 8 --window 4", {"--sinks"}},
      {"flag_stop_after_not_a_number", none, "train {CFG} --out {D}/run --stop-after abc", {"--stop-after"}, true},
      {"flag_unknown", none, "train {CFG} --out {D}/run --bogus 3", {"--bogus"}, true},
      {"flag_show_not_a_number", none, "data inspect {DATA} --show lots", {"--show"}, true},
      {"flag_model_type", none, "tokenizer train --input {DATA} --vocab-size 512 --model-type wordpiece --out {D}/t.model",
       {"--model-type"}, true},
      {"flag_nproc_zero", none, "launch --nproc 0 -- version", {"--nproc"}, true},
      {"flag_twice", none, gen_good + " --max-new-tokens 4 --max-new-tokens 5", {"--max-new-tokens"}, true},
      {"flag_val_fraction", [](const fs::path& d, const Paths&) { write(d / "text" / "a.txt", "hello world\n"); },
       "data prepare --tokenizer {DATA}/tokenizer.model --input {D}/text --out {D}/out --val-fraction 1.5", {"fraction"}},
  };
  return c;
}

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    const std::string run = root_->str() + "/good";
    auto r = run_streamsink(tiny_train_args(run, "--set train.steps=2 --set train.eval_interval=0 --set train.threads=1"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    paths_ = {run + "/checkpoints/step_0000002", prepared_corpus(), source_dir() + "/configs/tiny.yaml"};
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  static TempDir* root_;
  static Paths paths_;
};
TempDir* BadInput::root_ = nullptr;
Paths BadInput::paths_;

}  // namespace

TEST_F(BadInput, EveryCaseFailsCleanlyNamesTheCulpritAndModifiesNothing) {
  const auto all = cases();
  ASSERT_GE(all.size(), 30u);
  int tried = 0, cli11_codes = 0;
  for (const auto& c : all) {
    SCOPED_TRACE(c.name);
    const fs::path d = root_->path() / "cases" / c.name;
    fs::create_directories(d);
    c.setup(d, paths_);
    const auto before = snapshot(root_->path());
    const auto data_before = snapshot(paths_.data);
    const std::string args = expand(c.args, d, paths_);
    auto r = run_streamsink(args);
    ++tried;
    const bool cli11_code = c.cli11 && r.exit_code >= 100 && r.exit_code < 128;
    cli11_codes += cli11_code;
    EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2 || (kAcceptCli11Codes && cli11_code))
        << "exit code " << r.exit_code << " (want 1 or 2)\n$ streamsink " << args << "\n" << r.output;
    for (const auto& e : c.expect) {
      const std::string want = expand(e, d, paths_);
      EXPECT_NE(r.output.find(want), std::string::npos)
          << "the message must contain '" << want << "'\n$ streamsink " << args << "\n" << r.output;
    }
    EXPECT_EQ(modified_file(before, root_->path()), "") << "$ streamsink " << args << "\n" << r.output;
    EXPECT_EQ(modified_file(data_before, paths_.data), "") << "$ streamsink " << args;
  }
  std::fprintf(stderr, "[bad-input] %d cases tried; %d exited with a CLI11 code (100-127) instead of 2\n", tried,
               cli11_codes);
}
