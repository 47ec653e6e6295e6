// The readers under fuzz take a path: each input is written to one per-process scratch file (in /dev/shm when it
// exists) and read back from there.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace streamsink::fuzz {

inline std::string scratch_path(const char* name) {
  const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  return std::string(base) + "/streamsink-fuzz-" + std::to_string(getpid()) + "-" + name;
}

inline void write_input(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace streamsink::fuzz
