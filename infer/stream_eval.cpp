#include "infer/stream_eval.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/file_util.h"
#include "data/corpus.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "infer/decoder.h"

namespace streamsink {

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports kilobytes
}

int64_t bos_id_for_flag(const std::string& path) {
  const int32_t id = Tokenizer::load(path).bos_id();
  if (id < 0) fail(path, "has no <s> for --bos");
  return id;
}

DecodeConfig eval_decode_config(const DecodeConfig& decode, const ModelConfig& model, int64_t n_tokens) {
  DecodeConfig dc = decode;
  if (dc.policy == PolicyKind::kDense) dc.max_tokens = n_tokens + stream_prefix_tokens(dc, model);
  return dc;
}

StreamEvalResult evaluate_stream(Transformer model, const std::vector<int32_t>& tokens, const StreamEvalOptions& opt) {
  const auto N = static_cast<int64_t>(tokens.size());
  if (N < 2) throw Error("eval-stream: the stream has " + std::to_string(N) + " tokens; at least 2 are needed");
  if (opt.block <= 0) throw Error("--block: must be positive, got " + std::to_string(opt.block));
  Decoder dec(model, eval_decode_config(opt.decode, model->config(), N), 1);

  StreamEvalResult r;
  r.policy = dec.policy().describe();
  r.tokens = N;
  r.scored = N - 1;
  r.block = opt.block;
  r.nll.assign(N, std::numeric_limits<float>::quiet_NaN());
  const auto dev = model->parameters().front().device();
  const int64_t chunk = dec.max_chunk();
  const int64_t seg = chunk * std::max<int64_t>(1, opt.segment_tokens / chunk);
  std::vector<std::vector<int64_t>> part(1);

  double running_sum = 0;  // of the NLLs scored so far, for the progress callback
  int64_t running_n = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s0 = 0; s0 < N; s0 += seg) {
    const int64_t len = std::min(seg, N - s0);
    part[0].assign(tokens.begin() + s0, tokens.begin() + s0 + len);
    // The targets of this segment's rows: tokens s0 + 1 .. (the stream's last token scores nothing).
    const int64_t nt = std::min(len, N - 1 - s0);
    at::Tensor targets;  // [nt]
    if (nt > 0) {
      const std::vector<int64_t> next(tokens.begin() + s0 + 1, tokens.begin() + s0 + 1 + nt);
      targets = at::tensor(next, at::kLong).to(dev);
    }
    dec.feed(part, [&](int64_t off, const std::vector<int64_t>& n_valid, const at::Tensor& logits) {
      // Row c (token g + c of the stream) scores token g + c + 1.
      const int64_t g = s0 + off;
      const int64_t n = std::min(n_valid[0], N - 1 - g);
      if (n > 0) {
        auto lp = at::log_softmax(logits.select(0, 0).narrow(0, 0, n), -1);  // [n, V]
        auto tgt = targets.narrow(0, off, n).view({n, 1});                   // [n, 1]
        auto nll = lp.gather(1, tgt).neg().view({n}).to(at::kCPU).to(at::kFloat).contiguous();
        std::copy(nll.data_ptr<float>(), nll.data_ptr<float>() + n, r.nll.begin() + g + 1);
        if (opt.progress) {
          for (int64_t i = 0; i < n; ++i) running_sum += r.nll[g + 1 + i];
          running_n += n;
        }
      }
      if (opt.progress)
        opt.progress(g + n_valid[0], N,
                     running_n > 0 ? running_sum / running_n : std::numeric_limits<double>::quiet_NaN());
    });
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? N / r.seconds : 0;

  double sum = 0;
  for (int64_t i = 1; i < N; ++i) sum += r.nll[i];
  r.mean_nll = sum / (N - 1);
  r.ppl = std::exp(r.mean_nll);
  for (int64_t b0 = 0; b0 < N; b0 += opt.block) {
    double s = 0;
    int64_t n = 0;
    for (int64_t i = std::max<int64_t>(b0, 1); i < std::min(N, b0 + opt.block); ++i) s += r.nll[i], ++n;
    r.block_ppl.push_back(n > 0 ? std::exp(s / n) : std::numeric_limits<double>::quiet_NaN());
  }
  r.cache_bytes = dec.cache_bytes();
  r.peak_rss_bytes = peak_rss_bytes();
  return r;
}

void write_nll_jsonl(const std::string& path, const std::vector<int32_t>& tokens, const StreamEvalResult& r) {
  AtomicFile f(path);
  std::string buf;
  char line[96];
  for (int64_t i = 1; i < r.tokens; ++i) {
    std::snprintf(line, sizeof line, "{\"i\": %lld, \"token\": %d, \"nll\": %.6g}\n", static_cast<long long>(i),
                  tokens[i], static_cast<double>(r.nll[i]));
    buf += line;
    if (buf.size() > (1 << 20)) f.write(buf), buf.clear();
  }
  f.write(buf);
  f.commit();
}

std::string summary_json(const StreamEvalResult& r) {
  nlohmann::json j;
  j["policy"] = r.policy;
  j["tokens"] = r.tokens;
  j["scored"] = r.scored;
  j["mean_nll"] = r.mean_nll;
  j["ppl"] = r.ppl;
  j["block"] = r.block;
  auto blocks = nlohmann::json::array();
  for (double p : r.block_ppl) blocks.push_back(std::isfinite(p) ? nlohmann::json(p) : nlohmann::json(nullptr));
  j["block_ppl"] = blocks;
  j["seconds"] = r.seconds;
  j["tokens_per_s"] = r.tokens_per_s;
  j["cache_bytes"] = r.cache_bytes;
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  return j.dump(2) + "\n";
}

std::string summary_table(const StreamEvalResult& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "| policy | tokens | ppl | mean nll | tokens/s | cache MiB | peak RSS MiB |\n"
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
                "| %s | %lld | %.3f | %.4f | %.1f | %.3f | %.1f |\n",
                r.policy.c_str(), static_cast<long long>(r.tokens), r.ppl, r.mean_nll, r.tokens_per_s,
                r.cache_bytes / 1048576.0, r.peak_rss_bytes / 1048576.0);
  return buf;
}

namespace {

bool looks_like_shard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in && (magic == kShardMagicU16 || magic == kShardMagicU32);
}

}  // namespace

void check_data_tokenizer(const std::string& data_path, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  if (tokenizer_path.empty() || !fs::is_regular_file(tokenizer_path)) return;
  std::string dir;
  if (fs::is_directory(data_path)) {
    dir = data_path;
  } else if (fs::is_regular_file(data_path) && looks_like_shard(data_path)) {
    dir = fs::path(data_path).parent_path().string();
    if (dir.empty()) dir = ".";
  } else {
    return;  // a text file, tokenized with the checkpoint's tokenizer; or nothing there (load_eval_tokens says so)
  }
  if (!fs::exists(fs::path(dir) / "manifest.json")) return;
  const Manifest m = read_manifest(dir);
  if (!fs::is_directory(data_path)) {  // a shard: only one the manifest lists is known to be its data
    const std::string name = fs::path(data_path).filename().string();
    bool listed = false;
    for (const auto& split : m.shards) listed = listed || std::find(split.begin(), split.end(), name) != split.end();
    if (!listed) return;
  }
  check_manifest_tokenizer(m, tokenizer_path);
}

std::vector<int32_t> load_eval_tokens(const std::string& path, const std::string& tokenizer_path, int64_t max_tokens,
                                      int64_t vocab_size) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) fail(path, "no such file or directory (--data: a shard, a data folder or a text file)");
  std::vector<int32_t> out;
  if (fs::is_directory(path)) {
    out = read_split_tokens(path, "test", max_tokens);
  } else if (looks_like_shard(path)) {
    const Shard s = Shard::open(path);
    const int64_t n = max_tokens >= 0 ? std::min(max_tokens, s.size()) : s.size();
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = s.at(i);
  } else {
    if (fs::path(path).extension() == ".bin")
      fail(path, "has no token-shard header (llm.c magic 20240520 or 20240801): a damaged shard, or not a shard");
    std::string text;
    if (!read_document(path, &text))
      fail(path, "is neither a token shard nor text (binary content): --data takes a shard, a data folder or text");
    if (tokenizer_path.empty() || !fs::exists(tokenizer_path))
      fail(path, "is a text file, and tokenizing it needs the checkpoint's tokenizer.model (or --tokenizer), not found" +
                     (tokenizer_path.empty() ? std::string() : " at " + tokenizer_path));
    const Tokenizer tok = Tokenizer::load(tokenizer_path);
    out = tok.encode(text);
    if (max_tokens >= 0 && static_cast<int64_t>(out.size()) > max_tokens) out.resize(max_tokens);
  }
  if (out.size() < 2)
    fail(path, "yields " + std::to_string(out.size()) + " token" + (out.size() == 1 ? "" : "s") +
                   "; at least 2 are needed (the first token is never scored)");
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] < 0 || out[i] >= vocab_size)
      fail(path, "token " + std::to_string(i) + " has id " + std::to_string(out[i]) +
                     ", outside the model's vocabulary of " + std::to_string(vocab_size) +
                     " (was the data made with another tokenizer?)");
  return out;
}

}  // namespace streamsink
