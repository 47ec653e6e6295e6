// streamsink::Error: the one exception type for bad input and failed I/O. Its message names the file (or key)
// and the problem; the executable prints it and exits non-zero, never a crash.
#pragma once
#include <stdexcept>
#include <string>

namespace streamsink {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "path: problem" — the house style for messages about a file.
[[noreturn]] inline void fail(const std::string& where, const std::string& problem) {
  throw Error(where + ": " + problem);
}

}  // namespace streamsink
