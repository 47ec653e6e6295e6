// libFuzzer target: the token shard reader (data/shard.h). A bad shard must be an exception naming the file, never
// a crash or an out-of-bounds read; a shard that opens must yield exactly its n_tokens tokens through at() and copy().
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
    for (int64_t i = 0; i < s.size(); ++i)
      if (all[static_cast<size_t>(i)] != static_cast<uint32_t>(s.at(i))) std::abort();
    try {
      s.at(s.size());  // one past the end: must throw
      std::abort();
    } catch (const std::exception&) {
    }
  } catch (const std::exception&) {
  }
  return 0;
}
