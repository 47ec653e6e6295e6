// Timing helpers shared by the benchmark programs.
#pragma once

#include <time.h>

#include <algorithm>
#include <vector>

namespace streamsink::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// CPU time of the calling thread, ms: with one intra-op thread every op runs on it, so unlike wall time this
// leaves out the time a busy neighbour holds the core.
inline double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

}  // namespace streamsink::bench
