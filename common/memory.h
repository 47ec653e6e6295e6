// How much host memory this process can still get, and the check every large host allocation goes through first:
// LibTorch's CPU allocator aborts the process (SIGABRT, "DefaultCPUAllocator: can't allocate") when an allocation
// fails, and past the machine's memory the kernel's OOM killer ends it without a word, so a model or a cache too
// large for the machine must be an Error before it is built (model/model_memory.h, infer/kv_cache.cpp).
#pragma once
#include <cstdint>
#include <string>

namespace streamsink {

struct HostMemory {
  int64_t available = -1;  // bytes this process can still allocate; -1 = unknown (then nothing is refused)
  int64_t physical = -1;   // the machine's memory (MemTotal); -1 = unknown
  std::string source;      // where `available` comes from, for messages: "MemAvailable in /proc/meminfo", or
                           //   "the room left under the cgroup limit of 8.00 GiB (/sys/fs/cgroup/.../memory.max)"
};

// The least of the kernel's MemAvailable (PROC/meminfo: free memory plus the page cache and slabs it can reclaim)
// and, when this process's cgroup or one of its ancestors has a memory limit, the room left under it: limit - (usage
// - inactive file cache), cgroup v2 (CGROUP/<path>/memory.max, memory.current, memory.stat) or v1
// (CGROUP/memory/<path>/memory.limit_in_bytes, memory.usage_in_bytes, memory.stat), the path from PROC/self/cgroup.
// Swap is not counted. The roots are parameters for the tests (a fake /proc and /sys/fs/cgroup).
HostMemory host_memory(const std::string& proc = "/proc", const std::string& cgroup = "/sys/fs/cgroup");

// "22.3 GiB", "512 MiB", "64.0 TiB", "12 bytes".
std::string format_bytes(double bytes);

// Error "<what>, more than the 22.3 GiB this process can use (<source>)<hint>" when `need` bytes exceed what
// host_memory() says is available; nothing when that is unknown. `need` is a double: a mistyped size may pass 2^63.
void require_host_memory(double need, const std::string& what, const std::string& hint);

}  // namespace streamsink
