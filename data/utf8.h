// Well-formed UTF-8 (RFC 3629, Unicode's Table 3-7): the byte sequences that sentencepiece's normalizer keeps as
// they are. Anything else (a stray continuation byte, a lead byte without its continuations, an overlong form, a
// surrogate, a code point past U+10FFFF) it replaces by U+FFFD; the tokenizer encodes such bytes itself
// (data/tokenizer.h) so that no input byte is lost.
#pragma once
#include <cstddef>
#include <string_view>

namespace streamsink {

// Length (1-4) of the well-formed sequence that starts at s[i], or 0 when none does (i < s.size()).
size_t utf8_sequence_length(std::string_view s, size_t i);
// The index of the first byte that starts no well-formed sequence, from `from` on; s.size() when there is none.
size_t utf8_first_invalid(std::string_view s, size_t from = 0);

}  // namespace streamsink
