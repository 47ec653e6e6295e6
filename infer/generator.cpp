#include "infer/generator.h"

#include "common/error.h"

namespace streamsink {

Generator::Generator(Decoder& decoder, const SamplerConfig& sampler) : dec_(decoder), sampler_(sampler) {
  TORCH_CHECK(decoder.batch() == 1, "Generator: one stream at a time");
}

int64_t Generator::generate(const std::vector<int64_t>& prompt, const GenerateOptions& opt,
                            const std::function<void(int64_t)>& on_token, const std::function<bool()>& should_stop) {
  std::vector<int64_t> feed;
  if (pending_) feed.push_back(*pending_);
  feed.insert(feed.end(), prompt.begin(), prompt.end());
  pending_.reset();
  if (feed.empty()) throw Error("generate: the prompt is empty (it encodes to no tokens)");
  auto x = at::tensor(feed, at::kLong).view({1, -1});  // [1, T]
  auto logits = dec_.feed_last(x).select(0, 0);         // [V]
  int64_t n = 0;
  while (opt.max_new_tokens < 0 || n < opt.max_new_tokens) {
    if (should_stop && should_stop()) break;
    const int64_t tok = sampler_.sample(logits);
    ++n;
    on_token(tok);
    if (opt.stop_at_eos && tok == opt.eos_id) {
      pending_ = tok;
      break;
    }
    if (opt.max_new_tokens >= 0 && n == opt.max_new_tokens) {
      pending_ = tok;
      break;
    }
    logits = dec_.feed_last(at::full({1, 1}, tok, at::kLong)).select(0, 0);  // [V]
  }
  return n;
}

}  // namespace streamsink
