// libFuzzer target: the safetensors reader (model/safetensors.h). A bad file must be an exception naming the file,
// never a crash, an out-of-bounds read or a huge allocation; a file that loads must round-trip through
// save_safetensors and load again to the same tensors.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "model/safetensors.h"
#include "scripts/fuzz/fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = streamsink::fuzz::scratch_path("in.safetensors");
  static const std::string path2 = streamsink::fuzz::scratch_path("out.safetensors");
  streamsink::fuzz::write_input(path, data, size);
  streamsink::TensorMap t;
  std::map<std::string, std::string> meta;
  try {
    t = streamsink::load_safetensors(path, &meta);
  } catch (const std::exception&) {
    return 0;
  }
  try {
    streamsink::save_safetensors(path2, t, meta);
    std::map<std::string, std::string> meta2;
    const auto back = streamsink::load_safetensors(path2, &meta2);
    if (back.size() != t.size() || meta2 != meta) std::abort();
    for (const auto& [name, x] : t) {
      const auto& y = back.at(name);
      if (x.scalar_type() != y.scalar_type() || x.sizes() != y.sizes()) std::abort();
      // Bytes, not values: NaN payloads must survive too.
      if (x.numel() && std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) != 0) std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "a loaded file does not round-trip: %s\n", e.what());
    std::abort();
  }
  return 0;
}
