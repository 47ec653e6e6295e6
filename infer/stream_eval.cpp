#include "infer/stream_eval.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
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

StreamEvalResult evaluate_stream(Transformer model, const TokenStream& tokens, const StreamEvalOptions& opt) {
  const int64_t N = tokens.size();
  if (N < 2) throw Error("eval-stream: the stream has " + std::to_string(N) + " tokens; at least 2 are needed");
  if (opt.block <= 0) throw Error("--block: must be positive, got " + std::to_string(opt.block));
  Decoder dec(model, eval_decode_config(opt.decode, model->config(), N), 1);

  StreamEvalResult r;
  r.policy = dec.policy().describe();
  r.tokens = N;
  r.scored = N - 1;
  r.block = opt.block;
  if (opt.keep_nll) r.nll.assign(N, std::numeric_limits<float>::quiet_NaN());
  const auto dev = model->parameters().front().device();
  const int64_t chunk = dec.max_chunk();
  const int64_t seg = chunk * std::max<int64_t>(1, opt.segment_tokens / chunk);
  std::vector<std::vector<int64_t>> part(1);
  std::vector<int64_t> next;  // the segment's targets, tokens s0 + 1 ..

  // Sums in stream order, token by token, as the tokens are scored: the whole stream's and its current block's.
  double sum = 0, block_sum = 0;
  int64_t block_n = 0, block_end = opt.block;
  auto close_block = [&] {
    r.block_ppl.push_back(block_n > 0 ? std::exp(block_sum / block_n) : std::numeric_limits<double>::quiet_NaN());
    block_sum = 0, block_n = 0, block_end += opt.block;
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s0 = 0; s0 < N; s0 += seg) {
    const int64_t len = std::min(seg, N - s0);
    part[0].resize(len);
    tokens.copy(s0, len, part[0].data());
    // The targets of this segment's rows: tokens s0 + 1 .. (the stream's last token scores nothing).
    const int64_t nt = std::min(len, N - 1 - s0);
    at::Tensor targets;  // [nt]
    if (nt > 0) {  // the segment shifted by one, and the next segment's first token when there is one
      next.assign(part[0].begin() + 1, part[0].end());
      if (nt == len) {
        next.emplace_back();
        tokens.copy(s0 + len, 1, &next.back());
      }
      targets = at::from_blob(next.data(), {nt}, at::kLong).to(dev, /*non_blocking=*/false, /*copy=*/true);
    }
    dec.feed(part, [&](int64_t off, const std::vector<int64_t>& n_valid, const at::Tensor& logits) {
      // Row c (token g + c of the stream) scores token g + c + 1.
      const int64_t g = s0 + off;
      const int64_t n = std::min(n_valid[0], N - 1 - g);
      if (n > 0) {
        auto lp = at::log_softmax(logits.select(0, 0).narrow(0, 0, n), -1);  // [n, V]
        auto tgt = targets.narrow(0, off, n).view({n, 1});                   // [n, 1]
        auto nll_t = lp.gather(1, tgt).neg().view({n}).to(at::kCPU).to(at::kFloat).contiguous();
        const float* nll = nll_t.data_ptr<float>();
        for (int64_t k = 0; k < n; ++k) {
          const int64_t i = g + 1 + k;  // the token scored
          while (i >= block_end) close_block();
          sum += nll[k], block_sum += nll[k], ++block_n;
        }
        if (opt.keep_nll) std::copy(nll, nll + n, r.nll.begin() + g + 1);
        if (opt.on_scored) opt.on_scored(g + 1, next.data() + off, nll, n);
      }
      if (opt.progress) opt.progress(g + n_valid[0], N, g + n > 0 ? sum / (g + n) : std::nan(""));
      if (opt.stop && opt.stop()) throw StreamEvalInterrupted(g + n_valid[0], N);
    });
    tokens.release(s0, len);  // read: its mapped pages leave the resident set, which stays bounded
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? N / r.seconds : 0;
  close_block();  // the last block, [.., N)
  r.mean_nll = sum / (N - 1);
  r.ppl = std::exp(r.mean_nll);
  r.cache_bytes = dec.cache_bytes();
  r.peak_rss_bytes = peak_rss_bytes();
  return r;
}

StreamEvalResult evaluate_stream(Transformer model, const std::vector<int32_t>& tokens, const StreamEvalOptions& opt) {
  return evaluate_stream(std::move(model), TokenStream::from_tokens(tokens), opt);
}

void NllJsonlWriter::add(int64_t first, const int64_t* ids, const float* nll, int64_t n) {
  char line[96];
  for (int64_t k = 0; k < n; ++k) {
    std::snprintf(line, sizeof line, "{\"i\": %lld, \"token\": %lld, \"nll\": %.6g}\n",
                  static_cast<long long>(first + k), static_cast<long long>(ids[k]), static_cast<double>(nll[k]));
    buf_ += line;
  }
  if (buf_.size() > (1 << 20)) file_.write(buf_), buf_.clear();
}

void NllJsonlWriter::commit() {
  file_.write(buf_);
  buf_.clear();
  file_.commit();
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
  const TokenStream s = TokenStream::open(path, tokenizer_path, max_tokens, vocab_size);
  return s.read(0, s.size());
}

}  // namespace streamsink
