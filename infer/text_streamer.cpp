#include "infer/text_streamer.h"

namespace streamsink {

std::string TextStreamer::text(int32_t id) const {
  if (id == tok_.bos_id() || id == tok_.eos_id() || id == tok_.pad_id()) return "";
  for (int64_t i = 0; i < tok_.n_sink_ids(); ++i)
    if (id == tok_.sink_id(static_cast<int>(i))) return "";
  const std::string p = tok_.piece(id);
  // Byte-fallback piece "<0xAB>"
  if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>')
    return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
  std::string out;
  static const std::string kSpace = "\xE2\x96\x81";  // U+2581 "▁", sentencepiece's whitespace
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, 3, kSpace) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += p[i++];
    }
  }
  return out;
}

}  // namespace streamsink
