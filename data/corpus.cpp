#include "data/corpus.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "common/error.h"
#include "data/utf8.h"

namespace streamsink {
namespace fs = std::filesystem;

std::vector<Document> find_documents(const std::vector<std::string>& inputs) {
  std::vector<Document> docs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const fs::path root(inputs[i]);
    std::error_code ec;
    const auto st = fs::status(root, ec);
    if (ec || !fs::exists(st)) fail(inputs[i], "no such file or directory");
    const size_t first = docs.size();
    if (fs::is_regular_file(st)) {
      docs.push_back({root.string(), root.filename().string(), static_cast<int>(i)});
    } else if (fs::is_directory(st)) {
      auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
      if (ec) fail(inputs[i], "cannot list: " + ec.message());
      for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (ec) fail(inputs[i], "cannot list: " + ec.message());
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {  // .git, editor droppings
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (!it->is_regular_file(ec)) continue;
        docs.push_back({it->path().string(), it->path().lexically_relative(root).generic_string(),
                        static_cast<int>(i)});
      }
    } else {
      fail(inputs[i], "neither a regular file nor a directory");
    }
    std::sort(docs.begin() + static_cast<std::ptrdiff_t>(first), docs.end(),
              [](const Document& a, const Document& b) { return a.relpath < b.relpath; });
  }
  // One document per file: the first of the names that reach it (device and inode identify it).
  std::set<std::pair<uintmax_t, uintmax_t>> seen;
  std::vector<Document> unique;
  for (auto& d : docs) {
    struct stat st {};
    if (::stat(d.path.c_str(), &st) != 0 || seen.insert({st.st_dev, st.st_ino}).second) unique.push_back(std::move(d));
  }
  return unique;
}

bool looks_binary(std::string_view head) {
  head = head.substr(0, 8000);
  if (head.find('\0') != std::string_view::npos) return true;
  // Count bytes that start no well-formed UTF-8 sequence; latin-1 text has a few, binary has many.
  size_t bad = 0;
  const size_t n = head.size();
  for (size_t i = 0; i < n;) {
    const size_t len = utf8_sequence_length(head, i);
    if (len > 0) {
      i += len;
      continue;
    }
    const auto c = static_cast<unsigned char>(head[i]);
    const size_t lead = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (lead > 0 && i + lead > n) break;  // a sequence cut by the 8000-byte limit
    ++bad;
    ++i;
  }
  return n > 0 && bad * 10 > n * 3;  // more than 30% stray bytes
}

bool document_is_text(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
  std::string head(8000, '\0');
  size_t got = 0;
  while (got < head.size()) {
    const int n = gzread(f, head.data() + got, static_cast<unsigned>(head.size() - got));
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      fail(path, "read failed: " + msg);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  gzclose(f);
  head.resize(got);
  return !looks_binary(head);
}

bool read_document(const std::string& path, std::string* text) {
  text->clear();
  // gzread reads plain files transparently, so one path serves both; it also handles concatenated gzip members.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(path, std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
  gzbuffer(f, 1 << 17);
  char buf[1 << 16];
  bool checked = false;
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      text->clear();
      fail(path, "read failed: " + msg);
    }
    if (n == 0) {
      // The end, or a gzip stream cut short: zlib reports the latter as 0 bytes read with Z_BUF_ERROR.
      int code = Z_OK;
      const std::string msg = gzerror(f, &code);
      if (code != Z_OK) {
        gzclose(f);
        text->clear();
        fail(path, "truncated or corrupt compressed file: " + msg);
      }
      break;
    }
    text->append(buf, static_cast<size_t>(n));
    if (!checked && text->size() >= 8000) {
      checked = true;
      if (looks_binary(*text)) {
        gzclose(f);
        text->clear();
        return false;
      }
    }
  }
  gzclose(f);
  if (!checked && looks_binary(*text)) {
    text->clear();
    return false;
  }
  return true;
}

}  // namespace streamsink
