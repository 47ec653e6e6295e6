// Data parallelism on torch's own c10d engine: a TCPStore for rendezvous, ProcessGroupGloo on CPU and
// ProcessGroupNCCL on CUDA. One `Distributed` per process; with world_size 1 every call is a no-op and no process
// group is created, so the training loop calls it unconditionally.
//
// Failure model: every call waits at most `timeout` (a peer that died is noticed at once: its sockets close). Then a
// short liveness check through the store (clamp(timeout/4, 1 s, 5 s)) finds the rank(s) that are gone, and a
// streamsink::Error names the collective, this rank and the lost ranks; it never hangs. After a failure the object
// is unusable: let the error end the process.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class Store;
class Backend;
class Work;
}  // namespace c10d

namespace streamsink {

// Where this process sits in the job, from the environment of whichever launcher started it.
struct DistEnv {
  int rank = 0;                           // global rank, 0..world_size-1
  int world_size = 1;                     // number of processes in the job
  int local_rank = 0;                     // rank on this node (picks the CUDA device)
  int local_world_size = 1;               // ranks on this node (LOCAL_WORLD_SIZE; SLURM's tasks on this node)
  bool cpus_bound = false;                // the launcher bound each rank to CPUs of its own (srun's --cpu-bind)
  std::string master_addr = "127.0.0.1";  // host of the TCPStore (rank 0, or the torchrun agent)
  int master_port = 29500;                // port of the TCPStore
  bool agent_store = false;               // torchrun's agent hosts the store: connect as a client only
  int restart_count = 0;                  // TORCHELASTIC_RESTART_COUNT: store keys are prefixed per attempt
  std::string launcher = "single";        // torchrun | slurm | streamsink-launch | single
};

// Reads torchrun's variables (RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT TORCHELASTIC_USE_AGENT_STORE),
// or else SLURM's (SLURM_PROCID SLURM_NTASKS SLURM_LOCALID, first host of SLURM_STEP_NODELIST/SLURM_JOB_NODELIST,
// MASTER_ADDR/MASTER_PORT when set; the default port is 20000 + SLURM_JOB_ID % 10000 so that jobs sharing a node
// do not collide), or else a single process. Throws streamsink::Error naming the variable that is malformed.
DistEnv detect_dist_env();

// SLURM's tasks on node `node` from a SLURM_*TASKS_PER_NODE value ("2(x3),1": 2 on nodes 0-2, 1 on node 3); 0
// when the value does not parse or names fewer nodes.
int slurm_tasks_on_node(const std::string& spec, int node);

// Intra-op threads for one CPU rank: the CPUs this process may run on (`available`, its affinity mask) divided
// among the node's ranks, which all see the same set (torchrun, taskset, a container's cpuset), unless the
// launcher bound each rank to CPUs of its own (`bound`: srun's --cpu-bind), which are then its alone. At least 1.
int cpu_threads_per_rank(int available, int local_world_size, bool bound);
// The same for this process: sched_getaffinity's count.
int cpu_threads_per_rank(const DistEnv& env);

// The first host of a SLURM node list: "gpu[01-04]" -> "gpu01", "a,b" -> "a", "n[3,5-7]" -> "n3".
std::string first_slurm_host(const std::string& nodelist);

class Distributed {
 public:
  // Bucket size for the flattened collectives (as DDP's default).
  static constexpr int64_t kBucketBytes = 25 * 1024 * 1024;

  // Rendezvous and process group set-up: a TCPStore (hosted by rank 0 unless env.agent_store) and
  // ProcessGroupGloo for a CPU device or ProcessGroupNCCL for a CUDA device. `timeout` bounds the rendezvous and
  // every collective. A single process (launcher "single") creates nothing, and its collectives do nothing; a world
  // of one started by a launcher gets a process group of one.
  static std::unique_ptr<Distributed> init(const DistEnv& env, c10::Device device,
                                           std::chrono::milliseconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank() == 0; }
  const std::string& backend_name() const { return backend_name_; }  // "gloo", "nccl", or "none"

  // Every rank's tensors become root's (parameters at start). Tensors must have the same shapes on every rank.
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);
  // Every tensor becomes the mean over ranks (gradients): flattened into buckets of ~kBucketBytes per dtype, one
  // all-reduce (SUM) per bucket, divided by world_size, copied back in place.
  void allreduce_mean(std::vector<at::Tensor>& tensors);
  // The sum over ranks of a scalar (loss, token counts, for logging).
  double allreduce_sum(double v);
  // The sums over ranks of a few scalars, in one collective (the trainer's loss and stop request).
  std::vector<double> allreduce_sum(const std::vector<double>& values);
  void barrier();

 private:
  Distributed() = default;
  enum class Op { kBroadcast, kAllreduceSum };
  void run_bucketed(std::vector<at::Tensor>& tensors, Op op, int root, bool divide, const char* what);
  void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const char* what);
  [[noreturn]] void fail(const char* what, const std::string& cause);
  std::string diagnose_lost_ranks();

  int rank_ = 0;
  int world_size_ = 1;
  c10::Device device_{c10::kCPU};
  std::chrono::milliseconds timeout_{0};
  std::string backend_name_ = "none";
  std::string store_where_;      // "127.0.0.1:29500 (hosted by rank 0)" for messages
  bool store_on_rank0_ = true;
  std::string master_addr_;      // the store's address, for the liveness check after a failure
  int master_port_ = 0;
  uint64_t collectives_ = 0;     // collectives issued so far, identical on every rank while in step
  bool failed_ = false;          // after a failure the process group is leaked, not joined (its threads may hang)
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> pg_;
};

}  // namespace streamsink
