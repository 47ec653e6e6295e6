#include "common/fault_injection.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "common/error.h"

namespace streamsink::fault {

namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0') throw Error(std::string(name) + ": expected an integer, got '" + v + "'");
  return x;
}

Faults parse() {
  Faults f;
  f.slow_checkpoint_ms = env_int("STREAMSINK_FAULT_SLOW_CHECKPOINT_MS", 0);
  f.checkpoint_write_fail_step = env_int("STREAMSINK_FAULT_CHECKPOINT_WRITE_FAIL_STEP", -1);
  f.exit_at_step = env_int("STREAMSINK_FAULT_EXIT_AT_STEP", -1);
  f.stop_at_step = env_int("STREAMSINK_FAULT_STOP_AT_STEP", -1);
  f.rank = env_int("STREAMSINK_FAULT_RANK", -1);
  if (const char* v = std::getenv("STREAMSINK_FAULT_NAN_STEP"); v && *v) {
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const long long x = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0')
        throw Error(std::string("STREAMSINK_FAULT_NAN_STEP: expected N[,M...], got '") + v + "'");
      f.nan_steps.push_back(x);
    }
  }
  if (const char* v = std::getenv("STREAMSINK_FAULT_NAN_IN"); v && *v) {
    const std::string s = v;
    if (s != "grad" && s != "loss" && s != "weights")
      throw Error("STREAMSINK_FAULT_NAN_IN: expected grad, loss or weights, got '" + s + "'");
    f.nan_in = s == "loss" ? NanIn::kLoss : s == "weights" ? NanIn::kWeights : NanIn::kGrad;
  }
  if (const char* v = std::getenv("STREAMSINK_FAULT_NAN_VALUE"); v && *v) {
    const std::string s = v;
    if (s != "nan" && s != "inf") throw Error("STREAMSINK_FAULT_NAN_VALUE: expected nan or inf, got '" + s + "'");
    if (s == "inf") f.nan_value = std::numeric_limits<float>::infinity();
  }
  return f;
}

bool rank_matches(int rank) { return faults().rank < 0 || faults().rank == rank; }

}  // namespace

const Faults& faults() {
  static const Faults f = parse();
  return f;
}

void checkpoint_pause() {
  if (faults().slow_checkpoint_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(faults().slow_checkpoint_ms));
}

void maybe_fail_checkpoint_write(int64_t step, const std::string& path) {
  if (faults().checkpoint_write_fail_step >= 0 && step == faults().checkpoint_write_fail_step)
    fail(path, "write failed: No space left on device (injected by STREAMSINK_FAULT_CHECKPOINT_WRITE_FAIL_STEP)");
}

bool nan_at(int64_t step, int rank, NanIn where) {
  const auto& s = faults().nan_steps;
  return !s.empty() && faults().nan_in == where && rank_matches(rank) && std::find(s.begin(), s.end(), step) != s.end();
}

void maybe_exit(int64_t step, int rank) {
  if (faults().exit_at_step < 0 || step != faults().exit_at_step || !rank_matches(rank)) return;
  std::fprintf(stderr, "[fault] STREAMSINK_FAULT_EXIT_AT_STEP=%lld: rank %d exits abruptly (pid %d)\n",
               static_cast<long long>(step), rank, static_cast<int>(::getpid()));
  std::fflush(stderr);
  ::_exit(9);
}

bool stop_at(int64_t step, int rank) {
  return faults().stop_at_step >= 0 && step == faults().stop_at_step && rank_matches(rank);
}

}  // namespace streamsink::fault
