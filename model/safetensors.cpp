#include "model/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "common/file_util.h"

namespace streamsink {

namespace {

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  int64_t size;
};
const DtypeInfo kDtypes[] = {
    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},  {"I32", at::kInt, 4},  {"F64", at::kDouble, 8}, {"U8", at::kByte, 1},
};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return &d;
  return nullptr;
}
const DtypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit

}  // namespace

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const auto* d = dtype_by_type(t.scalar_type());
    if (!d) fail(path, "tensor '" + name + "' has a dtype safetensors support here does not cover");
    auto c = t.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = c.numel() * d->size;
    header[name] = {{"dtype", d->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned, as the reference does
  AtomicFile out(path);
  uint64_t n = h.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const auto& c : data) out.write(c.data_ptr(), c.numel() * c.element_size());
  out.commit();
}

TensorMap load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (does it exist?)");
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();  // -1 where the path cannot be sized (a directory, a pipe)
  if (end < 0) fail(path, "cannot read its size (is it a regular file?)");
  const uint64_t file_size = static_cast<uint64_t>(end);
  in.seekg(0);
  if (file_size < 8) fail(path, "truncated: " + std::to_string(file_size) + " bytes, not even a header length");
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) fail(path, "cannot read the header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > kMaxHeader || n > file_size - 8)
    fail(path, "header length " + std::to_string(n) + " is larger than the file (" + std::to_string(file_size) +
                   " bytes): truncated or not a safetensors file");
  std::string h(n, '\0');
  in.read(h.data(), static_cast<std::streamsize>(n));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const std::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  const uint64_t data_size = file_size - 8 - n;

  struct Entry {
    std::string name;
    const DtypeInfo* dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (metadata && it->is_object())
        for (auto m = it->begin(); m != it->end(); ++m)
          if (m->is_string()) (*metadata)[m.key()] = m->get<std::string>();
      continue;
    }
    const std::string where = "tensor '" + it.key() + "'";
    const auto& t = *it;
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets"))
      fail(path, where + ": needs dtype, shape and data_offsets");
    if (!t["dtype"].is_string()) fail(path, where + ": dtype is not a string");
    Entry e{it.key(), dtype_by_name(t["dtype"].get<std::string>()), {}, 0, 0};
    if (!e.dtype) fail(path, where + ": unsupported dtype '" + t["dtype"].get<std::string>() + "'");
    if (!t["shape"].is_array()) fail(path, where + ": shape is not a list");
    uint64_t numel = 1, nonzero = 1;  // the product of all dimensions, and of the non-zero ones
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned()) fail(path, where + ": shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      // the non-zero dimensions' product too: a 0 in the shape would let numel's check pass huge ones, whose
      // strides then overflow in at::empty ([0, 2^62, 4]: "Stride calculation overflowed", naming no file)
      if (v > (1ull << 62) || (v != 0 && nonzero > (1ull << 62) / v)) fail(path, where + ": shape overflows");
      numel *= v;
      if (v != 0) nonzero *= v;
      e.shape.push_back(static_cast<int64_t>(v));
    }
    // numel <= 2^62, but numel * 8 bytes could still wrap around to match small offsets (tests/test_bad_input.cpp).
    if (numel > (1ull << 62) / static_cast<uint64_t>(e.dtype->size)) fail(path, where + ": shape overflows");
    const auto& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, where + ": data_offsets must be [begin, end]");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size)
      fail(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     "] fall outside the " + std::to_string(data_size) + " data bytes (truncated file?)");
    if (e.end - e.begin != numel * e.dtype->size)
      fail(path, where + ": shape and dtype need " + std::to_string(numel * e.dtype->size) + " bytes, offsets give " +
                     std::to_string(e.end - e.begin));
    entries.push_back(std::move(e));
  }
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  // Against the furthest end so far, not just the previous tensor's (an empty tensor in between hid an overlap).
  const Entry* reach = nullptr;
  for (const Entry* e : by_offset) {
    if (e->end == e->begin) continue;  // empty tensors occupy no bytes
    if (reach && e->begin < reach->end)
      fail(path, "tensors '" + reach->name + "' and '" + e->name + "' overlap");
    if (!reach || e->end > reach->end) reach = e;
  }

  TensorMap out;
  for (const auto& e : entries) {
    auto t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    in.seekg(static_cast<std::streamoff>(8 + n + e.begin));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    if (!in) fail(path, "read error in tensor '" + e.name + "'");
    out[e.name] = t;
  }
  return out;
}

}  // namespace streamsink
