// File helpers that keep good data safe: writes go to PATH.tmp.<pid> and are renamed over PATH only when
// complete and flushed, so a crash or a full disk never leaves a half-written file under the real name.
#pragma once
#include <cstdio>
#include <string>

namespace streamsink {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // opens PATH.tmp.<pid>; Error naming PATH when it cannot
  ~AtomicFile();                          // without commit(): removes the temporary file
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);  // Error naming PATH on a short write (disk full...)
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();                           // flush, fsync, rename over PATH

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

// A folder written whole or not at all: OUT must be absent or an empty folder (never overwrite good data); the
// files go to path() = OUT.tmp.<pid>, commit() renames it over OUT, and without commit() the destructor removes it.
class StagingDir {
 public:
  StagingDir(std::string out, const std::string& what);  // `what` names the command for messages
  ~StagingDir();
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  const std::string& path() const { return tmp_; }
  void commit();

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

// Error naming `flag` and PATH unless PATH's folder exists and is writable: for a command that writes PATH only
// after a long computation.
void check_output_folder(const std::string& path, const std::string& flag);
// PATH's folder created where missing (as `mkdir -p`), then check_output_folder: for a command whose inputs are
// known good, before the long computation, so a refused command leaves nothing behind.
void prepare_output_folder(const std::string& path, const std::string& flag);

// Whole-file helpers with errors that name the file.
std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace streamsink
