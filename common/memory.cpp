#include "common/memory.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "common/error.h"

namespace streamsink {

namespace {

namespace fs = std::filesystem;

// The first whitespace-separated word of PATH, or "" when it cannot be read.
std::string first_word(const fs::path& path) {
  std::ifstream in(path);
  std::string w;
  in >> w;
  return w;
}

// A non-negative integer (INT64_MAX past it), or -1 ("max", garbage, or an unreadable file).
int64_t to_bytes(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  if (s.size() > 19) return std::numeric_limits<int64_t>::max();
  const unsigned long long v = std::stoull(s);  // 19 digits fit in 64 bits unsigned
  return v > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                                   : static_cast<int64_t>(v);
}

// The value of `key` in a "key value [unit]" file (/proc/meminfo's "MemAvailable:  123 kB", memory.stat's
// "inactive_file 123"), times `scale`; -1 when absent.
int64_t keyed_value(const fs::path& path, const std::string& key, int64_t scale) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string k, v;
    if (!(ls >> k >> v) || k != key) continue;
    const int64_t n = to_bytes(v);
    return n < 0 || n > std::numeric_limits<int64_t>::max() / scale ? -1 : n * scale;
  }
  return -1;
}

struct CgroupRoom {
  int64_t room = -1, limit = -1;  // bytes; -1 = no limit found
  std::string file;               // the file that set the limit
};

// The tightest limit over BASE/REL and its ancestors up to BASE (a limit binds every cgroup below it; a container
// sees its own cgroup as the root of the mount while /proc/self/cgroup may still name its path on the host, and the
// levels that do not exist are skipped).
// The files of v2 or of v1; a v1 "unlimited" limit is a huge number (PAGE_COUNTER_MAX pages), read as no limit.
void tightest(const fs::path& base, const std::string& rel, bool v2, CgroupRoom& best) {
  const char* limit_name = v2 ? "memory.max" : "memory.limit_in_bytes";
  const char* usage_name = v2 ? "memory.current" : "memory.usage_in_bytes";
  const char* inactive_key = v2 ? "inactive_file" : "total_inactive_file";
  std::vector<fs::path> levels{base};  // BASE, BASE/a, BASE/a/b, ...
  for (const auto& part : fs::path(rel).relative_path())
    if (!part.empty() && part != "." && part != "..") levels.push_back(levels.back() / part);
  for (const fs::path& dir : levels) {
    const int64_t limit = to_bytes(first_word(dir / limit_name));
    if (limit < 0 || limit >= (int64_t{1} << 60)) continue;
    const int64_t usage = std::max<int64_t>(0, to_bytes(first_word(dir / usage_name)));
    const int64_t inactive = std::max<int64_t>(0, keyed_value(dir / "memory.stat", inactive_key, 1));
    const int64_t room = std::max<int64_t>(0, limit - std::max<int64_t>(0, usage - inactive));
    if (best.room < 0 || room < best.room) best = {room, limit, (dir / limit_name).string()};
  }
}

}  // namespace

HostMemory host_memory(const std::string& proc, const std::string& cgroup) {
  HostMemory m;
  const fs::path meminfo = fs::path(proc) / "meminfo";
  m.physical = keyed_value(meminfo, "MemTotal:", 1024);
  m.available = keyed_value(meminfo, "MemAvailable:", 1024);  // kB
  if (m.available >= 0) m.source = "MemAvailable in " + meminfo.string();

  // /proc/self/cgroup: "0::/path" (v2), "4:memory:/path" (v1's memory controller)
  CgroupRoom best;
  std::ifstream in(fs::path(proc) / "self" / "cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    const std::string rel = line.substr(b + 1);
    if (id == "0" && controllers == ",,") tightest(cgroup, rel, true, best);
    else if (controllers.find(",memory,") != std::string::npos) tightest(fs::path(cgroup) / "memory", rel, false, best);
  }
  if (best.room >= 0 && (m.available < 0 || best.room < m.available)) {
    m.available = best.room;
    m.source = "the room left under the cgroup limit of " + format_bytes(static_cast<double>(best.limit)) + ", " +
               best.file;
  }
  return m;
}

std::string format_bytes(double bytes) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  char buf[64];
  if (!(bytes >= 1024)) {
    std::snprintf(buf, sizeof buf, "%.0f bytes", bytes);
    return buf;
  }
  int u = 0;
  double v = bytes / 1024;
  while (v >= 1024 && u < 5) v /= 1024, ++u;
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : v < 1e4 ? "%.0f %s" : "%.3g %s", v,
                units[u]);
  return buf;
}

void require_host_memory(double need, const std::string& what, const std::string& hint) {
  const HostMemory m = host_memory();
  if (m.available < 0 || !(need > static_cast<double>(m.available))) return;
  throw Error(what + ", more than the " + format_bytes(static_cast<double>(m.available)) +
              " this process can use (" + m.source + ")" + hint);
}

}  // namespace streamsink
