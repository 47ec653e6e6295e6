// A corpus: the documents under a list of input paths (files, or folders walked recursively), plain or gzip text.
// One file is one document. Binary files are recognised and skipped.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace streamsink {

struct Document {
  std::string path;     // as found on disk
  std::string relpath;  // relative to its input root (a file given directly: its file name); hashed for splits
  int input = 0;        // index of the input it came from
};

// Every regular file under `inputs`, sorted by (input, relpath) so the order never depends on the file system.
// Hidden entries (names starting with '.') inside folders are skipped. A file reached twice (a symbolic link to
// another document, or inputs that overlap) is kept once, where it is first met: it would otherwise be hashed
// under two names and could land in two splits. Error naming an input that does not exist.
std::vector<Document> find_documents(const std::vector<std::string>& inputs);

// Whether a document is text, from its first 8000 bytes (decompressed): the test read_document applies, without
// reading the rest. Error naming the file if it cannot be read.
bool document_is_text(const std::string& path);

// Reads a whole document into `text`, decompressing gzip (recognised by its magic bytes, not the name).
// Returns false, leaving `text` empty, when the content looks binary. Error naming the file if it cannot be read.
bool read_document(const std::string& path, std::string* text);

// A NUL byte, or mostly invalid UTF-8, in the first 8000 bytes (git's heuristic plus a UTF-8 check).
bool looks_binary(std::string_view head);

}  // namespace streamsink
