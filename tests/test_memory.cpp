// common/memory.h (how much host memory this process can get) and model/model_memory.h (what a model needs of it):
//  - the live query is sane: positive, at most the machine's physical memory;
//  - against fake /proc and /sys/fs/cgroup trees with known figures (the oracle): MemAvailable alone, a tighter
//    cgroup v2 or v1 limit less its usage plus its reclaimable cache, an ancestor's limit, "max" and v1's
//    "unlimited" number ignored, a container that sees its cgroup as the mount's root;
//  - the model's parameter count in double equals parameter_count's closed form and the built model's own count.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/memory.h"
#include "model/model_memory.h"
#include "model/transformer.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"

using namespace streamsink;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// A fake /proc with MemTotal 16 GiB and MemAvailable `avail_kib`, in this process's cgroup `cgroup_line`.
fs::path fake_proc(const fs::path& root, int64_t avail_kib, const std::string& cgroup_line) {
  const fs::path proc = root / "proc";
  write(proc / "meminfo", "MemTotal:       16777216 kB\nMemFree:          100000 kB\nMemAvailable:   " +
                              std::to_string(avail_kib) + " kB\nBuffers:           12345 kB\n");
  write(proc / "self" / "cgroup", cgroup_line);
  return proc;
}

}  // namespace

TEST(HostMemory, TheLiveQueryIsPositiveAndAtMostThePhysicalMemory) {
  const HostMemory m = host_memory();
  const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  ASSERT_GT(m.available, 0) << "no MemAvailable in /proc/meminfo?";
  EXPECT_LE(static_cast<double>(m.available), physical);
  EXPECT_GT(m.physical, 0);
  EXPECT_LE(static_cast<double>(m.physical), physical + 1);
  EXPECT_FALSE(m.source.empty());
  std::fprintf(stderr, "[memory] %s available (%s) of %s\n", format_bytes(static_cast<double>(m.available)).c_str(),
               m.source.c_str(), format_bytes(static_cast<double>(m.physical)).c_str());
}

TEST(HostMemory, MemAvailableAloneWhenNoCgroupLimits) {
  streamsink::testing::TempDir t;
  // v2 at the root has no memory.max; a v1 memory cgroup with the "unlimited" number; a v2 cgroup saying "max"
  const auto proc = fake_proc(t.path(), 8 * 1024 * 1024, "4:memory:/box\n0::/user.slice\n");
  write(t.path() / "cg" / "memory" / "box" / "memory.limit_in_bytes", "9223372036854771712\n");
  write(t.path() / "cg" / "user.slice" / "memory.max", "max\n");
  write(t.path() / "cg" / "memory" / "memory.limit_in_bytes", "99999999999999999999999\n");  // past 2^64: no limit
  const HostMemory m = host_memory(proc.string(), (t.path() / "cg").string());
  EXPECT_EQ(m.available, 8 * kGiB);
  EXPECT_EQ(m.physical, 16 * kGiB);
  EXPECT_NE(m.source.find("MemAvailable"), std::string::npos) << m.source;
}

TEST(HostMemory, ACgroupV2LimitBelowMemAvailableWinsLessItsUsageButNotItsInactiveCache) {
  streamsink::testing::TempDir t;
  const auto proc = fake_proc(t.path(), 8 * 1024 * 1024, "0::/system.slice/job.scope\n");
  const fs::path cg = t.path() / "cg" / "system.slice" / "job.scope";
  write(cg / "memory.max", std::to_string(4 * kGiB) + "\n");
  write(cg / "memory.current", std::to_string(3 * kGiB) + "\n");
  write(cg / "memory.stat", "anon 1073741824\nfile 2147483648\ninactive_file " + std::to_string(kGiB) + "\n");
  const HostMemory m = host_memory(proc.string(), (t.path() / "cg").string());
  EXPECT_EQ(m.available, 2 * kGiB);  // 4 - (3 - 1)
  EXPECT_NE(m.source.find("4.00 GiB"), std::string::npos) << m.source;
  EXPECT_NE(m.source.find((cg / "memory.max").string()), std::string::npos) << m.source;
}

TEST(HostMemory, AnAncestorsTighterLimitBindsAndAHigherOneDoesNot) {
  streamsink::testing::TempDir t;
  const auto proc = fake_proc(t.path(), 8 * 1024 * 1024, "0::/a/b\n");
  write(t.path() / "cg" / "a" / "memory.max", std::to_string(3 * kGiB));
  write(t.path() / "cg" / "a" / "memory.current", "0");
  write(t.path() / "cg" / "a" / "b" / "memory.max", std::to_string(6 * kGiB));
  write(t.path() / "cg" / "a" / "b" / "memory.current", "0");
  EXPECT_EQ(host_memory(proc.string(), (t.path() / "cg").string()).available, 3 * kGiB);
  // a limit above MemAvailable (8 GiB) leaves MemAvailable
  write(t.path() / "cg" / "a" / "memory.max", std::to_string(12 * kGiB));
  write(t.path() / "cg" / "a" / "b" / "memory.max", "max");
  EXPECT_EQ(host_memory(proc.string(), (t.path() / "cg").string()).available, 8 * kGiB);
}

TEST(HostMemory, ACgroupV1LimitCountsAndAContainerSeesItsOwnCgroupAtTheRoot) {
  streamsink::testing::TempDir t;
  // /proc/self/cgroup names the host's path, but the container's mount shows only its own cgroup, at the root
  const auto proc = fake_proc(t.path(), 8 * 1024 * 1024, "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n");
  const fs::path mem = t.path() / "cg" / "memory";
  write(mem / "memory.limit_in_bytes", std::to_string(2 * kGiB));
  write(mem / "memory.usage_in_bytes", std::to_string(kGiB));
  write(mem / "memory.stat", "cache 536870912\ninactive_file 1\ntotal_inactive_file 536870912\n");
  EXPECT_EQ(host_memory(proc.string(), (t.path() / "cg").string()).available, kGiB + kGiB / 2);
}

TEST(HostMemory, WithoutMeminfoTheCgroupOrNothing) {
  streamsink::testing::TempDir t;
  write(t.path() / "proc" / "self" / "cgroup", "0::/\n");
  const auto proc = (t.path() / "proc").string();
  EXPECT_EQ(host_memory(proc, (t.path() / "cg").string()).available, -1);  // unknown: nothing is refused
  write(t.path() / "cg" / "memory.max", std::to_string(kGiB));
  EXPECT_EQ(host_memory(proc, (t.path() / "cg").string()).available, kGiB);
}

TEST(HostMemory, FormatBytesKeepsThreeDigits) {
  EXPECT_EQ(format_bytes(12), "12 bytes");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(22.34 * kGiB), "22.3 GiB");
  EXPECT_EQ(format_bytes(512.0 * (1 << 20)), "512 MiB");
  EXPECT_EQ(format_bytes(64.0 * kGiB * 1024), "64.0 TiB");
}

TEST(HostMemory, RequireRefusesOnlyWhatDoesNotFit) {
  EXPECT_NO_THROW(require_host_memory(1 << 20, "a MiB", ""));
  try {
    require_host_memory(1e30, "WHERE: the thing needs 1e30 bytes", ": HINT");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("WHERE: the thing needs 1e30 bytes, more than the ", 0), 0u) << w;
    EXPECT_NE(w.find("this process can use ("), std::string::npos) << w;
    EXPECT_EQ(w.substr(w.size() - 6), ": HINT") << w;
  }
}

TEST(ModelMemory, TheParameterCountEqualsTheBuiltModel) {
  for (SinkKind sink : streamsink::testing::all_sinks())
    for (bool tied : {true, false})
      for (int64_t hidden : {int64_t{0}, int64_t{48}}) {
        auto cfg = streamsink::testing::tiny_config(sink);
        cfg.tie_embeddings = tied;
        cfg.hidden_dim = hidden;
        const auto m = model_memory(cfg);
        EXPECT_EQ(m.param_bytes, 4 * m.parameters);
        EXPECT_EQ(m.rope_bytes, 24.0 * cfg.context_length * cfg.head_dim());
        Transformer model(cfg);  // the oracle: what LibTorch allocates
        int64_t n = 0;
        for (const auto& p : model->parameters()) n += p.numel();
        EXPECT_EQ(m.parameters, static_cast<double>(n));
      }
}

TEST(ModelMemory, AnAbsurdConfigIsCountedWithoutOverflowAndRefused) {
  ModelConfig cfg;
  cfg.vocab_size = 4000000;
  cfg.dim = 4194304;
  const auto m = model_memory(cfg);
  EXPECT_GT(m.param_bytes, 6e13);  // 4e6 x 4.2e6 embedding parameters alone, in float32: 67 TB
  try {
    check_model_fits("X/config.yaml", "loading this model", model_build_items(cfg), 1, ": the model is big");
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.rfind("X/config.yaml: loading this model needs ", 0), 0u) << w;
    EXPECT_NE(w.find("float32 parameters"), std::string::npos) << w;
    EXPECT_NE(w.find("more than the"), std::string::npos) << w;
  }
  // a tiny model fits, on as many ranks as a node has
  EXPECT_NO_THROW(check_model_fits("tiny", "training", model_build_items(streamsink::testing::tiny_config()), 8, ""));
}
