// libFuzzer target: the token shard reader (data/shard.h). A bad shard must be an exception naming the file, never
// a crash or an out-of-bounds read; a shard that opens must yield exactly its n_tokens tokens through at() and copy(),
// and scan() must agree with them (the largest id, and the count in a range).
#include <algorithm>
#include <cstdlib>
#include <exception>
#include <vector>

#include "data/shard.h"
#include "scripts/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = streamsink::fuzz::scratch_path("train_000000.bin");
  streamsink::fuzz::write_input(path, data, size);
  try {
    const auto h = streamsink::read_shard_header(path);
    const auto s = streamsink::Shard::open(path);
    if (s.size() != h.n_tokens) std::abort();
    if (static_cast<int64_t>(size) != streamsink::kShardHeaderBytes + s.size() * streamsink::dtype_bytes(s.dtype()))
      std::abort();
    std::vector<int64_t> all(static_cast<size_t>(s.size()));
    s.copy(0, s.size(), all.data());
    int64_t max = -1, in_range = 0;
    for (int64_t i = 0; i < s.size(); ++i) {
      const int64_t t = all[static_cast<size_t>(i)];
      if (t != static_cast<uint32_t>(s.at(i))) std::abort();
      max = std::max(max, t);
      in_range += t >= 4 && t < 1000;
    }
    const auto sc = s.scan(4, 1000);
    if (sc.max != max || sc.in_range != in_range) std::abort();
    try {
      s.at(s.size());  // one past the end: must throw
      std::abort();
    } catch (const std::exception&) {
    }
  } catch (const std::exception&) {
  }
  return 0;
}
