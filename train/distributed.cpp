// Data parallelism on c10d: TCPStore rendezvous + ProcessGroupGloo (CPU) / ProcessGroupNCCL (CUDA).
//
// Gloo's headers: the pip wheel ships torch's c10d headers but not gloo's; ProcessGroupGloo.hpp needs only
// declarations from <gloo/...> (we hold gloo objects through shared_ptr and never construct one), and gloo's code
// is inside libtorch_cpu.so. Debian's libgloo-dev provides the headers (cmake/Dependencies.cmake).
#include "train/distributed.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if STREAMSINK_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>
#include <utility>

#include "common/error.h"

namespace streamsink {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

int parse_env_int(const char* name, const char* text, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    throw Error("environment variable " + std::string(name) + "='" + text + "': expected an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int>(v);
}

int env_int(const char* name, int fallback, long lo, long hi) {
  const char* v = env_or_null(name);
  return v ? parse_env_int(name, v, lo, hi) : fallback;
}

std::string seconds(milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", ms.count() / 1000.0);
  return buf;
}

std::string message_of(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

// Gloo's transport device: GLOO_SOCKET_IFNAME (as in torch) picks an interface; a loopback master means a single
// node, so bind loopback; otherwise the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const DistEnv& env) {
  if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) {
    std::string first(ifname);
    first = first.substr(0, first.find(','));
    return c10d::ProcessGroupGloo::createDeviceForInterface(first);
  }
  if (is_loopback(env.master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// Whether a TCP connection to host:port opens within `timeout`. Used to tell, after a failure, whether the store
// (and so the rank hosting it) is still there, without going through TCPStore (which logs a stack trace when its
// server is gone).
bool tcp_reachable(const std::string& host, int port, milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return false;
  bool ok = false;
  for (addrinfo* a = res; a && !ok; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return ok;
}

}  // namespace

// ---- environment ----

std::string first_slurm_host(const std::string& nodelist) {
  // The first top-level entry ("node[01-04]" of "node[01-04],x"), then the first element of each bracket group.
  std::string out;
  int depth = 0;
  bool in_group_head = false;  // inside [...] and still before the first ',' or '-'
  for (char c : nodelist) {
    if (c == '[') {
      ++depth;
      in_group_head = true;
    } else if (c == ']') {
      if (depth > 0) --depth;
      in_group_head = false;
    } else if (depth == 0) {
      if (c == ',' || c == ' ') break;
      out += c;
    } else if (in_group_head) {
      if (c == ',' || c == '-') {
        in_group_head = false;
      } else {
        out += c;
      }
    }
  }
  return out;
}

DistEnv detect_dist_env() {
  DistEnv env;
  const int kMaxRanks = 1 << 20;
  if (env_or_null("RANK") || env_or_null("WORLD_SIZE")) {
    // torchrun (or our launcher, which sets the same variables).
    if (!env_or_null("RANK") || !env_or_null("WORLD_SIZE"))
      throw Error(std::string("environment: ") + (env_or_null("RANK") ? "RANK" : "WORLD_SIZE") +
                  " is set but " + (env_or_null("RANK") ? "WORLD_SIZE" : "RANK") + " is not (torchrun sets both)");
    env.world_size = env_int("WORLD_SIZE", 1, 1, kMaxRanks);
    env.rank = env_int("RANK", 0, 0, env.world_size - 1);
    env.local_rank = env_int("LOCAL_RANK", 0, 0, kMaxRanks);
    env.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, 1, kMaxRanks);
    if (const char* a = env_or_null("MASTER_ADDR")) env.master_addr = a;
    env.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
    const char* agent = env_or_null("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent && (std::string(agent) == "True" || std::string(agent) == "true" || std::string(agent) == "1");
    env.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0, 0, 1 << 30);
    const char* who = env_or_null("STREAMSINK_LAUNCHER");
    env.launcher = who ? who : "torchrun";
    return env;
  }
  if (env_or_null("SLURM_PROCID") && (env_or_null("SLURM_STEP_NUM_TASKS") || env_or_null("SLURM_NTASKS"))) {
    // srun: one task per rank. SLURM_STEP_NUM_TASKS is the step's own count when srun runs fewer tasks.
    const char* ntasks_name = env_or_null("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    env.world_size = env_int(ntasks_name, 1, 1, kMaxRanks);
    env.rank = env_int("SLURM_PROCID", 0, 0, env.world_size - 1);
    env.local_rank = env_int("SLURM_LOCALID", 0, 0, kMaxRanks);
    // Tasks on this node (for CPU threads): the step's own count first, as for the world size, then the job's.
    const int node = env_int("SLURM_NODEID", 0, 0, kMaxRanks);
    int on_node = 0;
    for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"})
      if (const char* spec = env_or_null(name); spec && on_node == 0) on_node = slurm_tasks_on_node(spec, node);
    if (on_node == 0 && env_or_null("SLURM_NTASKS_PER_NODE"))
      on_node = env_int("SLURM_NTASKS_PER_NODE", 1, 1, kMaxRanks);
    env.local_world_size = std::max(1, std::min(kMaxRanks, on_node));
    const char* bind = env_or_null("SLURM_CPU_BIND_TYPE");
    env.cpus_bound = bind && *bind && std::string(bind).rfind("none", 0) != 0;
    if (const char* a = env_or_null("MASTER_ADDR")) {
      env.master_addr = a;
    } else {
      const char* list_name = env_or_null("SLURM_STEP_NODELIST") ? "SLURM_STEP_NODELIST" : "SLURM_JOB_NODELIST";
      const char* list = env_or_null(list_name);
      if (!list && env.world_size > 1)
        throw Error("environment: SLURM_PROCID is set but neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is; "
                    "set MASTER_ADDR");
      if (list) {
        env.master_addr = first_slurm_host(list);
        if (env.master_addr.empty()) throw Error(std::string("environment: ") + list_name + "='" + list + "' names no host");
      }
    }
    const int job_id = env_int("SLURM_JOB_ID", 0, 0, 2147483647);
    env.master_port = env_int("MASTER_PORT", 20000 + job_id % 10000, 1, 65535);
    env.launcher = "slurm";
    return env;
  }
  return env;  // single process
}

int slurm_tasks_on_node(const std::string& spec, int node) {
  // comma-separated "N" or "N(xM)" groups
  int first = 0;
  size_t at = 0;
  while (at < spec.size()) {
    const size_t end = std::min(spec.find(',', at), spec.size());
    const std::string group = spec.substr(at, end - at);
    char* rest = nullptr;
    const long n = std::strtol(group.c_str(), &rest, 10);
    if (rest == group.c_str() || n < 0) return 0;
    long times = 1;
    if (*rest == '(') {
      if (rest[1] != 'x') return 0;
      times = std::strtol(rest + 2, &rest, 10);
      if (*rest != ')' || times < 1) return 0;
      ++rest;
    }
    if (*rest != '\0') return 0;
    if (node < first + times) return static_cast<int>(n);
    first += static_cast<int>(times);
    at = end + 1;
  }
  return 0;
}

int cpu_threads_per_rank(int available, int local_world_size, bool bound) {
  available = std::max(1, available);
  if (bound) return available;  // CPUs of its own
  return std::max(1, available / std::max(1, local_world_size));
}

int cpu_threads_per_rank(const DistEnv& env) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int available = sched_getaffinity(0, sizeof set, &set) == 0
                            ? CPU_COUNT(&set)
                            : static_cast<int>(std::thread::hardware_concurrency());
  return cpu_threads_per_rank(available, env.local_world_size, env.cpus_bound);
}

// ---- set-up ----

std::unique_ptr<Distributed> Distributed::init(const DistEnv& env, c10::Device device, milliseconds timeout) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    throw Error("distributed: rank " + std::to_string(env.rank) + " is outside a world of " +
                std::to_string(env.world_size));
  if (timeout.count() <= 0) throw Error("distributed: the timeout must be positive");
  std::unique_ptr<Distributed> d(new Distributed());
  d->rank_ = env.rank;
  d->world_size_ = env.world_size;
  d->device_ = device;
  d->timeout_ = timeout;
  // A single process builds no process group; a world of one that a launcher started builds one, as torchrun with
  // DDP does (so `launch --nproc 1` exercises the same collectives as a larger world: the cuda tests use it).
  if (env.world_size == 1 && env.launcher == "single") return d;

  if (device.is_cuda() && !device.has_index()) d->device_ = c10::Device(c10::kCUDA, env.local_rank);
  if (!d->device_.is_cpu() && !d->device_.is_cuda())
    throw Error("distributed: device " + d->device_.str() + " is not supported (cpu uses gloo, cuda uses nccl)");

  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  d->store_on_rank0_ = !env.agent_store;
  d->master_addr_ = env.master_addr;
  d->master_port_ = env.master_port;
  d->store_where_ = where + (env.agent_store ? " (hosted by the torchrun agent)" : " (hosted by rank 0)");
  const std::string who = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);

  // Rendezvous: rank 0 hosts the store and waits for every rank to connect; the others retry until the timeout.
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0 && !env.agent_store;
    if (!env.agent_store) so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw Error("distributed rendezvous: " + who + " could not " +
                (env.rank == 0 && !env.agent_store ? "host the store at " + where + " and gather every rank"
                                                   : "join the store at " + where) +
                " within " + seconds(timeout) + ": " + message_of(e) +
                " (are all " + std::to_string(env.world_size) + " ranks started, MASTER_ADDR reachable, MASTER_PORT free?)");
  }
  d->store_ = c10::make_intrusive<c10d::PrefixStore>(
      "streamsink/attempt_" + std::to_string(env.restart_count), tcp);

  try {
    if (d->device_.is_cpu()) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(gloo_device(env));
      d->pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(d->store_, env.rank, env.world_size, opts);
      d->backend_name_ = "gloo";
    } else {
#if STREAMSINK_WITH_CUDA
      c10::cuda::set_device(d->device_.index());
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      // NCCL's watchdog aborts the process when a collective outlives this; give it a margin, so that our own
      // wait (bounded by `timeout`) fails first and names the lost rank, as with Gloo.
      opts->timeout = timeout + std::chrono::seconds(30);
      d->pg_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(d->store_, env.rank, env.world_size, opts);
      d->backend_name_ = "nccl";
#else
      throw Error("distributed: a CUDA device was asked for but this build has no CUDA");
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    d->failed_ = true;
    throw Error("distributed: " + who + " could not connect its " + (d->device_.is_cpu() ? "gloo" : "nccl") +
                " process group within " + seconds(timeout) + " (store " + d->store_where_ + "): " + message_of(e) +
                d->diagnose_lost_ranks());
  }
  return d;
}

Distributed::~Distributed() {
  if (!failed_) {
    // A clean end: NCCL wants its communicators shut down before they are destroyed (else it warns and aborts
    // them); Gloo's shutdown does nothing.
    try {
      if (pg_) pg_->shutdown();
    } catch (...) {
    }
    return;
  }
  // After a failure a worker thread may still be blocked in a collective; the destructor would join it. Abort
  // what can be aborted, and leak the rest: the process is about to exit.
  try {
    if (pg_) pg_->abort();
  } catch (...) {
  }
  (void)pg_.release();
  (void)store_.release();
}

// ---- collectives ----

void Distributed::broadcast(std::vector<at::Tensor>& tensors, int root) {
  if (!pg_) return;
  if (root < 0 || root >= world_size_)
    throw Error("distributed broadcast: root " + std::to_string(root) + " is outside a world of " +
                std::to_string(world_size_));
  run_bucketed(tensors, Op::kBroadcast, root, /*divide=*/false, "broadcast");
}

void Distributed::allreduce_mean(std::vector<at::Tensor>& tensors) {
  if (!pg_) return;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].defined() && !at::isFloatingType(tensors[i].scalar_type()))
      throw Error("distributed all-reduce (mean): tensor " + std::to_string(i) + " has the non-floating dtype " +
                  std::string(c10::toString(tensors[i].scalar_type())));
  }
  run_bucketed(tensors, Op::kAllreduceSum, 0, /*divide=*/true, "all-reduce (mean)");
}

double Distributed::allreduce_sum(double v) { return allreduce_sum(std::vector<double>{v})[0]; }

std::vector<double> Distributed::allreduce_sum(const std::vector<double>& values) {
  if (!pg_ || values.empty()) return values;
  const auto n = static_cast<int64_t>(values.size());
  std::vector<at::Tensor> t{at::from_blob(const_cast<double*>(values.data()), {n}, at::kDouble)
                                .to(device_, /*non_blocking=*/false, /*copy=*/true)};
  run_bucketed(t, Op::kAllreduceSum, 0, /*divide=*/false, "all-reduce (scalar sum)");
  const at::Tensor host = t[0].to(at::kCPU).contiguous();
  return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + n);
}

void Distributed::barrier() {
  if (!pg_) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    c10d::BarrierOptions o;
    o.timeout = timeout_;
    if (device_.is_cuda()) o.device_ids = {device_.index()};
    ++collectives_;
    works.push_back(pg_->barrier(o));
  } catch (const std::exception& e) {
    fail("barrier", message_of(e));
  }
  wait_all(works, "barrier");
}

void Distributed::run_bucketed(std::vector<at::Tensor>& tensors, Op op, int root, bool divide, const char* what) {
  // Buckets: consecutive tensors of one dtype, up to kBucketBytes each (a bigger tensor gets a bucket to itself).
  struct Bucket {
    std::vector<size_t> members;
    int64_t bytes = 0;
    at::Tensor flat;
    bool aliased = false;  // flat is a view of the one member: nothing to copy back
  };
  std::vector<Bucket> buckets;
  std::map<int, size_t> open;  // dtype -> index of its open bucket
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    if (!t.defined()) throw Error(std::string("distributed ") + what + ": tensor " + std::to_string(i) + " is undefined");
    if (t.device() != device_)
      throw Error(std::string("distributed ") + what + ": tensor " + std::to_string(i) + " is on " + t.device().str() +
                  ", the process group is on " + device_.str());
    const int key = static_cast<int>(t.scalar_type());
    auto it = open.find(key);
    const int64_t bytes = static_cast<int64_t>(t.nbytes());
    if (it == open.end() || buckets[it->second].bytes + bytes > kBucketBytes) {
      buckets.emplace_back();
      open[key] = buckets.size() - 1;
      it = open.find(key);
    }
    buckets[it->second].members.push_back(i);
    buckets[it->second].bytes += bytes;
  }

  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& b : buckets) {
      if (b.bytes == 0) continue;  // only empty tensors (same on every rank): nothing to send
      if (b.members.size() == 1 && tensors[b.members[0]].is_contiguous()) {
        b.flat = tensors[b.members[0]].view({-1});  // [n]
        b.aliased = true;
      } else {
        std::vector<at::Tensor> parts;
        parts.reserve(b.members.size());
        for (size_t i : b.members) parts.push_back(tensors[i].reshape({-1}));
        b.flat = at::cat(parts);  // [sum of numels]
      }
      std::vector<at::Tensor> io{b.flat};
      ++collectives_;
      if (op == Op::kBroadcast) {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = timeout_;
        works.push_back(pg_->broadcast(io, o));
      } else {
        c10d::AllreduceOptions o;
        o.reduceOp = c10d::ReduceOp::SUM;  // Gloo has no AVG: divide below
        o.timeout = timeout_;
        works.push_back(pg_->allreduce(io, o));
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(what, message_of(e));
  }
  wait_all(works, what);

  for (auto& b : buckets) {
    if (b.bytes == 0) continue;
    if (divide) b.flat.div_(static_cast<double>(world_size_));
    if (b.aliased) continue;
    int64_t offset = 0;
    for (size_t i : b.members) {
      at::Tensor& t = tensors[i];
      const int64_t n = t.numel();
      t.copy_(b.flat.narrow(0, offset, n).view(t.sizes()));
      offset += n;
    }
  }
}

void Distributed::wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const char* what) {
  // One deadline for the whole call, so that k buckets cannot take k timeouts.
  const auto deadline = Clock::now() + timeout_;
  for (auto& w : works) {
    const auto left = std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
    try {
      w->wait(left);
    } catch (const std::exception& e) {
      std::string cause = message_of(e);
      if (cause.find("timed out") != std::string::npos || cause.find("Timed out") != std::string::npos)
        cause = "no answer within the timeout of " + seconds(timeout_) + " (" + cause + ")";
      fail(what, cause);
    }
  }
}

void Distributed::fail(const char* what, const std::string& cause) {
  failed_ = true;
  std::string msg = std::string("distributed ") + what + " failed on rank " + std::to_string(rank_) + " of " +
                    std::to_string(world_size_) + " (" + backend_name_ + ", collective #" +
                    std::to_string(collectives_) + "): " + cause;
  // Collapse multi-line c10d messages to keep the error one readable line.
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  throw Error(msg + diagnose_lost_ranks());
}

std::string Distributed::diagnose_lost_ranks() {
  // Every surviving rank that fails checks in at the store under a key of this collective; the ranks that do not
  // check in within a short grace are reported as lost. If the store itself is gone and rank 0 hosted it, rank 0
  // is the one that is gone.
  if (!store_) return "";
  const milliseconds grace = std::clamp(timeout_ / 4, milliseconds(1000), milliseconds(5000));
  if (!tcp_reachable(master_addr_, master_port_, std::min(grace, milliseconds(2000)))) {
    if (store_on_rank0_ && rank_ != 0)
      return "; lost rank 0: the store at " + store_where_ + " no longer accepts connections";
    return "; the store at " + store_where_ + " no longer accepts connections";
  }
  const std::string base = "alive/" + std::to_string(collectives_) + "/";
  try {
    store_->setTimeout(grace);
    store_->set(base + std::to_string(rank_), std::vector<uint8_t>{1});
    const auto deadline = Clock::now() + grace;
    std::vector<int> missing;
    for (;;) {
      missing.clear();
      for (int r = 0; r < world_size_; ++r)
        if (r != rank_ && !store_->check({base + std::to_string(r)})) missing.push_back(r);
      if (missing.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    if (missing.empty()) return "; every rank is still reachable through the store, so this is a timeout or a mismatch of collectives, not a lost process";
    std::string list;
    for (int r : missing) list += (list.empty() ? "" : ", ") + std::to_string(r);
    return std::string("; lost rank") + (missing.size() > 1 ? "s " : " ") + list + ": did not report alive within " +
           seconds(grace) + " (exited, killed, or stuck)";
  } catch (const std::exception& e) {
    if (store_on_rank0_ && rank_ != 0)
      return "; lost rank 0: the store at " + store_where_ + " is unreachable (" + message_of(e) + ")";
    return "; the store at " + store_where_ + " is unreachable too (" + message_of(e) + ")";
  }
}

}  // namespace streamsink
