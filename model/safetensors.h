// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a
// JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the raw bytes.
// The reader validates everything before touching data: header size, JSON, dtypes, shapes against byte ranges,
// ranges inside the file and not overlapping; a bad file is an Error naming the file and the problem.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace streamsink {

using TensorMap = std::map<std::string, at::Tensor>;  // ordered by name: files are written deterministically

// Writes tensors (F32, F16, BF16, I64, I32; CPU or not: copied to CPU) atomically: PATH.tmp, then rename.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor into CPU memory, in the file's dtype.
TensorMap load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace streamsink
