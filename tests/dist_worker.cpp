// A test-only worker for tests/test_distributed.cpp: one rank of a small job on CPU (Gloo), started either by the
// test itself or through `streamsink launch --exec`. Reads its place from the environment (detect_dist_env).
//   dist_worker collectives [timeout_s]       broadcast, bucketed all-reduce mean, scalar sum, barrier: checked
//                                             against closed forms; prints "OK rank R" and exits 0 (2 on mismatch)
//   dist_worker die-exit [timeout_s [victim]]  rank `victim` (default 1) exits(7) right after set-up; the others
//                                             run an all-reduce
//   dist_worker die-kill [timeout_s [victim]]  rank `victim` SIGKILLs itself right after set-up; same
//   dist_worker hang [timeout_s [victim]]      rank `victim` sleeps forever right after set-up; same
//   dist_worker die-before-init [timeout_s]   rank 1 exits(7) before set-up; the others try to set up
// Whoever catches an error prints "ERROR: <message>" and "ELAPSED_MS <ms>" and exits 3.
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "common/error.h"
#include "train/distributed.h"

namespace {

using streamsink::Distributed;

// Rank-dependent contents with a known mean: (rank + 1) * base, base = (arange(n) % 97 + k) / 8.
at::Tensor rank_tensor(int rank, int64_t n, int k, at::ScalarType dtype) {
  at::Tensor base = (at::arange(n, at::kDouble).remainder(97) + k) / 8.0;
  return (base * (rank + 1)).to(dtype);
}

int check(bool ok, const std::string& what, int rank) {
  if (!ok) std::printf("MISMATCH rank %d: %s\n", rank, what.c_str());
  return ok ? 0 : 1;
}

int run_collectives(Distributed& d) {
  const int r = d.rank(), w = d.world_size();
  int bad = 0;

  // broadcast: every rank ends with rank 0's tensors (several dtypes, one non-contiguous).
  std::vector<at::Tensor> b{rank_tensor(r, 12, 0, at::kFloat).view({3, 4}), rank_tensor(r, 7, 1, at::kDouble),
                            rank_tensor(r, 30, 2, at::kFloat).view({5, 6}).t()};
  d.broadcast(b);
  bad += check(at::equal(b[0], rank_tensor(0, 12, 0, at::kFloat).view({3, 4})), "broadcast float", r);
  bad += check(at::equal(b[1], rank_tensor(0, 7, 1, at::kDouble)), "broadcast double", r);
  bad += check(at::equal(b[2], rank_tensor(0, 30, 2, at::kFloat).view({5, 6}).t()), "broadcast transposed", r);

  // allreduce_mean: 20 MB + 12 MB of float spans two 25 MB buckets; plus small and mixed tensors.
  const std::vector<std::pair<int64_t, at::ScalarType>> specs{
      {5'000'000, at::kFloat}, {3'000'000, at::kFloat}, {17, at::kDouble}, {1, at::kFloat}, {999, at::kFloat}};
  std::vector<at::Tensor> g;
  for (size_t k = 0; k < specs.size(); ++k) g.push_back(rank_tensor(r, specs[k].first, static_cast<int>(k), specs[k].second));
  g.push_back(rank_tensor(r, 21, 9, at::kFloat).view({7, 3}).t());  // non-contiguous
  d.allreduce_mean(g);
  const double mean_factor = (w + 1) / 2.0;  // mean of (rank + 1) over ranks
  for (size_t k = 0; k < specs.size(); ++k) {
    at::Tensor want = rank_tensor(0, specs[k].first, static_cast<int>(k), at::kDouble) * mean_factor;
    bad += check(at::allclose(g[k].to(at::kDouble), want, 1e-6, 1e-6), "allreduce_mean tensor " + std::to_string(k), r);
  }
  bad += check(at::allclose(g.back().to(at::kDouble), (rank_tensor(0, 21, 9, at::kDouble) * mean_factor).view({7, 3}).t()),
               "allreduce_mean transposed", r);

  // allreduce_sum: sum of (rank + 0.5) = w(w-1)/2 + w/2.
  const double s = d.allreduce_sum(r + 0.5);
  bad += check(s == w * (w - 1) / 2.0 + 0.5 * w, "allreduce_sum = " + std::to_string(s), r);
  // allreduce_sum of several scalars in one collective: (rank, 1, a flag only rank w-1 raises) -> (w(w-1)/2, w, 1).
  const auto v = d.allreduce_sum(std::vector<double>{static_cast<double>(r), 1.0, r == w - 1 ? 1.0 : 0.0});
  bad += check(v.size() == 3 && v[0] == w * (w - 1) / 2.0 && v[1] == w && v[2] == 1.0, "allreduce_sum of a vector", r);

  d.barrier();
  if (bad) return 2;
  std::printf("OK rank %d of %d\n", r, w);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "collectives";
  const double timeout_s = argc > 2 ? std::atof(argv[2]) : 20.0;
  const int victim = argc > 3 ? std::atoi(argv[3]) : 1;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  auto t0 = std::chrono::steady_clock::now();  // reset before the collective that is expected to fail
  auto elapsed_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  };
  try {
    const streamsink::DistEnv env = streamsink::detect_dist_env();
    if (mode == "die-before-init" && env.rank == 1) std::_Exit(7);
    auto d = Distributed::init(env, c10::Device(c10::kCPU), timeout);
    if (mode == "collectives") return run_collectives(*d);
    if (d->rank() == victim) {
      if (mode == "die-exit") std::_Exit(7);
      if (mode == "die-kill") std::raise(SIGKILL);
      if (mode == "hang") for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    std::vector<at::Tensor> g{at::ones({1000})};
    t0 = std::chrono::steady_clock::now();
    d->allreduce_mean(g);
    d->barrier();
    std::printf("UNEXPECTED: rank %d finished the collectives\n", d->rank());
    return 0;
  } catch (const streamsink::Error& e) {
    std::printf("ERROR: %s\nELAPSED_MS %lld\n", e.what(), static_cast<long long>(elapsed_ms()));
    return 3;
  } catch (const c10::Error& e) {
    std::printf("C10 ERROR: %s\n", e.what_without_backtrace());
    return 4;
  } catch (const std::exception& e) {
    std::printf("OTHER ERROR: %s\n", e.what());
    return 4;
  }
}
