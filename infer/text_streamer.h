// Turns generated token ids into text one token at a time, for printing as they come. Decoding each token on its
// own with sentencepiece would drop word boundaries and break multi-byte characters split over byte pieces, so
// this maps pieces directly: "▁" → space, byte pieces "<0xAB>" → the raw byte (the terminal reassembles UTF-8),
// control symbols (<s>, </s>, <pad>, sinks) → nothing. Keeps no history: constant memory however long it runs.
#pragma once
#include <cstdint>
#include <string>

#include "data/tokenizer.h"

namespace streamsink {

class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tok) : tok_(tok) {}
  std::string text(int32_t id) const;  // the bytes token `id` adds to the output

 private:
  const Tokenizer& tok_;
};

}  // namespace streamsink
