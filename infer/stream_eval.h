// Streaming evaluation (the paper's §4.1 / Figure 3 protocol): one long stream of text fed through a cache policy,
// each token t+1 scored from the logits at t, so every token's negative log-likelihood is measured with exactly
// the context the policy keeps. The first token is never scored; for sink: token models neither are the sink
// tokens (they are fed first by the Decoder and are not part of the stream), so every variant scores the same
// tokens 1..N-1.
//
// Shapes: C tokens per chunk, V vocabulary.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"
#include "data/token_stream.h"
#include "infer/cache_policy.h"
#include "model/transformer.h"

namespace streamsink {

struct StreamEvalOptions {
  DecodeConfig decode;  // policy, S, W, positions, chunk (dense: max_tokens is set to the stream's length)
  int64_t block = 1024;  // tokens per reported perplexity block
  // Called after every chunk (may be empty): tokens fed so far, the stream's length, and the mean NLL of the
  // tokens scored so far (NaN before the first).
  std::function<void(int64_t done, int64_t total, double mean_nll)> progress;
  // The stream goes to the decoder in segments of about this many tokens (a multiple of the chunk, so the chunks
  // and the figures are those of one call): only a segment is held as int64 ids and targets, not the stream.
  int64_t segment_tokens = int64_t{1} << 16;
  // Called with each chunk's scored tokens, in stream order: token first + k has id ids[k] and NLL nll[k].
  std::function<void(int64_t first, const int64_t* ids, const float* nll, int64_t n)> on_scored;
  // Whether StreamEvalResult::nll keeps every token's NLL (4 bytes a token). Off, the evaluation's memory does not
  // grow with the stream: eval-stream passes the NLLs to on_scored (its --out writer) instead.
  bool keep_nll = true;
  // Checked after each chunk is scored: true stops the evaluation with StreamEvalInterrupted (eval-stream passes
  // interrupted(), so Ctrl-C stops it at the next chunk and --out is left unwritten).
  std::function<bool()> stop;
};

// Thrown by evaluate_stream when StreamEvalOptions::stop said so: the figures of part of a stream are not the
// stream's, so none are returned.
struct StreamEvalInterrupted : Error {
  StreamEvalInterrupted(int64_t done, int64_t total)
      : Error("stopped after " + std::to_string(done) + " of " + std::to_string(total) + " tokens"), done(done) {}
  int64_t done;  // tokens fed before the stop
};

struct StreamEvalResult {
  std::string policy;             // CachePolicy::describe()
  int64_t tokens = 0;             // N, the stream's length
  int64_t scored = 0;             // N - 1
  double mean_nll = 0, ppl = 0;   // over every scored token
  int64_t block = 0;
  std::vector<double> block_ppl;  // block j: tokens [j·block, (j+1)·block) (scored ones)
  double seconds = 0, tokens_per_s = 0;
  int64_t cache_bytes = 0;     // the cache's storage (constant for window/streaming)
  int64_t peak_rss_bytes = 0;  // the process's peak resident memory (getrusage)
  std::vector<float> nll;      // nll[i] for token i (nll[0] = NaN: not scored); empty unless keep_nll
};

// The <s> id of the tokenizer at `path`, for --bos; Error naming the file when it has none.
int64_t bos_id_for_flag(const std::string& path);
// The decode settings evaluate_stream uses for a stream of n_tokens (dense: max_tokens = the stream plus its
// prefix, <s> and sink tokens), so that a command can print the resolved policy before the evaluation starts.
DecodeConfig eval_decode_config(const DecodeConfig& decode, const ModelConfig& model, int64_t n_tokens);

// Feeds the stream through a fresh Decoder over `model` and scores every token. The figures are summed in stream
// order as tokens are scored, so they are the same whether or not the per-token NLLs are kept.
StreamEvalResult evaluate_stream(Transformer model, const TokenStream& tokens, const StreamEvalOptions& opt);
StreamEvalResult evaluate_stream(Transformer model, const std::vector<int32_t>& tokens, const StreamEvalOptions& opt);

// The per-token NLL file, written as the evaluation goes (PATH.tmp.<pid>, renamed over PATH by commit(), so PATH
// only ever holds a whole evaluation): one JSON object per scored token, {"i": 1, "token": 412, "nll": 3.21}.
class NllJsonlWriter {
 public:
  explicit NllJsonlWriter(const std::string& path) : file_(path) {}
  void add(int64_t first, const int64_t* ids, const float* nll, int64_t n);  // StreamEvalOptions::on_scored's
  void commit();

 private:
  AtomicFile file_;
  std::string buf_;
};
// Every figure of the result (the per-token NLL excepted) as a JSON object.
std::string summary_json(const StreamEvalResult& r);
// A small human-readable table of the figures.
std::string summary_table(const StreamEvalResult& r);

// The first max_tokens (-1 = all) of TokenStream::open(...), in memory, with its errors.
std::vector<int32_t> load_eval_tokens(const std::string& path, const std::string& tokenizer_path, int64_t max_tokens,
                                      int64_t vocab_size);

// That the token data at `data_path` was made with the tokenizer the model reads (`tokenizer_path`, the checkpoint's
// tokenizer.model): for a data folder holding manifest.json, or a shard listed in the manifest.json beside it, the
// manifest's tokenizer against that file (check_manifest_tokenizer: the checksum, else the id -> piece table).
// Error naming the manifest, the tokenizer it records and `tokenizer_path` when they differ (and the manifest's own
// errors, when it is malformed). Nothing to check, and
// nothing said: a text file (tokenized with the checkpoint's tokenizer anyway), a shard without a manifest, or no
// file at `tokenizer_path`.
void check_data_tokenizer(const std::string& data_path, const std::string& tokenizer_path);

int64_t peak_rss_bytes();  // getrusage(RUSAGE_SELF).ru_maxrss, in bytes

}  // namespace streamsink
