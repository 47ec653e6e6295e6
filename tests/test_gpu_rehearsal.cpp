// ctest-labels: integration slow
// Rehearses the one call of a GPU lease, scripts/gpu_lease.sh, end to end on the CPU (tiny config, synthetic
// corpus, seconds of training), so the lease is never spent on a typo: every phase runs (the benchmarks' command
// lines at toy size on the CPU), and the lease record, the check report, the summary and the archive appear. The
// models train in bf16 as on the GPU (autocast works on CPUs too); a precision that fails falls back to fp32.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "common/file_util.h"
#include "tests/corpus_fixture.h"
#include "train/peak_flops.h"

using namespace streamsink::testing;

namespace {

// "STREAMSINK_PEAK_CACHE=<file> ", the file holding fp32 and bf16 matmul peaks for every thread count the
// rehearsal's trainers may use: measuring one would take seconds of a phase's limit (bf16 on a CPU without fast bf16
// matmuls, as session 15's AVX2 host: ~13 s), and the figures only feed MFU, which a rehearsal does not judge.
std::string planted_peaks(const TempDir& dir) {
  nlohmann::json peaks;
  const std::string cpu = streamsink::cpu_model_name();
  for (int t = 1; t <= 256; ++t) {
    peaks[cpu + " | threads=" + std::to_string(t)] = 1e11;
    peaks[cpu + " | threads=" + std::to_string(t) + " | bf16"] = 1e11;
  }
  const std::string file = dir.str() + "/cpu_peak.json";
  std::ofstream(file) << peaks;
  return "STREAMSINK_PEAK_CACHE=" + file + " ";
}

}  // namespace

TEST(GpuLeaseRehearsal, EveryPhaseRunsAndTheResultsHoldTheTable) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string cmd = planted_peaks(dir) + "REHEARSE=1 PRECISION=bf16 WORK=" + dir.str() + "/work OUT=" + dir.str() +
                          "/out CORPUS_SRC=" + dir.str() + "/text TRAIN_S=3 EVAL_TOKENS=1200 RECOMPUTE_TOKENS=150 STREAMSINK_BIN=" + streamsink_binary() +
                          " bash " + source_dir() + "/scripts/gpu_lease.sh > " + dir.str() + "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = streamsink::read_file(dir.str() + "/log.txt");
  ASSERT_EQ(rc, 0) << log;

  const std::string lease = streamsink::read_file(dir.str() + "/out/lease.txt");
  for (const char* want : {"phase=cuda_tests rc=0", "phase=corpus rc=0", "phase=benchmarks rc=0", "phase=probe rc=0",
                           "train_s=3 per model", "phase=train_eval rc=0", "total_s="})
    EXPECT_NE(lease.find(want), std::string::npos) << want << "\n" << lease << log;
  // The cuda tests (GPU) and the corpus (CPUs) run side by side: the corpus starts before the tests end.
  const auto span = [&](const std::string& name) {
    const auto at = lease.find("phase=" + name + " ");
    const auto s = lease.find("span_ms=", at);
    if (at == std::string::npos || s == std::string::npos) return std::pair<long, long>{-1, -1};
    const auto dash = lease.find('-', s);
    return std::pair<long, long>{std::stol(lease.substr(s + 8, dash - s - 8)), std::stol(lease.substr(dash + 1))};
  };
  const auto tests = span("cuda_tests"), corpus = span("corpus"), bench = span("benchmarks");
  ASSERT_GE(tests.first, 0) << lease;
  ASSERT_GE(corpus.first, 0) << lease;
  EXPECT_LT(corpus.first, tests.second) << lease;
  EXPECT_GE(bench.first, std::max(tests.second, corpus.second)) << "the benchmarks time the GPU alone\n" << lease;

  // Without a GPU the cuda tests skip themselves (none fails); the benchmarks run their command lines at toy size
  // on the CPU: the profiled training benchmark and the decode benchmark each leave their lines.
  const std::string check = streamsink::read_file(dir.str() + "/out/gpu_check.txt");
  for (const char* want : {"cuda_tests rc=0 passed=0 skipped=", " failed=0 ", "profile: 2 step(s)",
                           "config=tiny precision=fp32 tok_s=", "cache=128 streaming_ms=", "status=0",
                           "threads=1 fp32_matmul_gflops="})
    EXPECT_NE(check.find(want), std::string::npos) << want << "\n" << check;
  // The peak line reached mfu_line.py, whose CPU branch gives MFU itself (MFU's denominator is the measured peak).
  const auto mfu_at = check.find(" mfu="), of_at = check.find(" mfu_of_matmul=");
  ASSERT_NE(of_at, std::string::npos) << check;
  EXPECT_EQ(check.substr(mfu_at + 5, 5), check.substr(of_at + 15, 5)) << check;
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/out/profile_train.txt"));

  const std::string summary = streamsink::read_file(dir.str() + "/out/summary.txt");
  for (const char* want : {"| vanilla |", "| learnable sink token |", "streaming 0+32", "streaming 4+28", "dense",
                           "recompute (0+32)", "recompute (1+31)", "train_none", "eval", "first-token attention per layer",
                           "training (last logged window):", "## Final metrics (last evaluation)", "| vanilla | `configs/tiny.yaml`",
                           "precision: bf16"})
    EXPECT_NE(summary.find(want), std::string::npos) << want << "\n" << summary;
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/out/results.tar.gz"));
  // Each evaluation's result lines reached gpu_run.log (in $OUT) as it finished, tagged with its model: a deadline
  // that cuts the report off keeps them (review, session 16: they reached $OUT only through the report).
  const std::string results_log = streamsink::read_file(dir.str() + "/out/gpu_run.log");
  for (const std::string v : {"none", "token"})
    for (const std::string what : {"  policy streaming", "perplexity ", "inspect-attention: ", "wrote "})
      EXPECT_NE(results_log.find("[sink=" + v + "] " + what), std::string::npos) << v << ": " << what << "\n" << results_log;
  const std::string none_log = streamsink::read_file(dir.str() + "/work/none/train.log");
  EXPECT_NE(none_log.find("bf16 autocast"), std::string::npos) << none_log;
  // The summary's throughput is each model's last logged training window, and both perplexity plots were drawn.
  for (const std::string v : {"none", "token"}) {
    std::ifstream metrics(dir.str() + "/work/" + v + "/metrics.jsonl");
    std::string line, last;
    while (std::getline(metrics, line))
      if (line.find("\"tok_s\"") != std::string::npos) last = line;
    ASSERT_FALSE(last.empty()) << v;
    const auto j = nlohmann::json::parse(last);
    char want[160];
    std::snprintf(want, sizeof want, "sink=%s steps=%d tokens=%lld tok_s=%.0f", v.c_str(), j["step"].get<int>(),
                  static_cast<long long>(j["tokens_seen"].get<int64_t>()), j["tok_s"].get<double>());
    EXPECT_NE(summary.find(want), std::string::npos) << want << "\n" << summary;
    EXPECT_TRUE(std::filesystem::exists(dir.str() + "/work/results/stream_ppl_" + v + ".png")) << v;
    EXPECT_TRUE(std::filesystem::exists(dir.str() + "/work/results/attention-" + v + ".png")) << v;
  }

  // The report from a partial evaluation (the deadline cut it short): the sink model's dense run and attention maps
  // are gone; its other cells, the vanilla row, the training tables and the archive remain.
  namespace fs = std::filesystem;
  fs::remove(dir.path() / "work/eval/token__dense_0+1200.nll.jsonl.summary.json");
  fs::remove_all(dir.path() / "work/attention-token");
  fs::remove(dir.path() / "out/summary.txt");
  const std::string again = planted_peaks(dir) + "REHEARSE=1 WORK=" + dir.str() + "/work OUT=" + dir.str() + "/out EVAL_TOKENS=1200 " +
                            "STREAMSINK_BIN=" + streamsink_binary() + " bash " + source_dir() +
                            "/scripts/experiments/gpu_run.sh report > " + dir.str() + "/log2.txt 2>&1";
  ASSERT_EQ(std::system(again.c_str()), 0) << streamsink::read_file(dir.str() + "/log2.txt");
  const std::string partial = streamsink::read_file(dir.str() + "/out/summary.txt");
  for (const char* want : {"| vanilla |", "| learnable sink token |", "dense (0+1200)", "| — |", "vanilla: first-token",
                           "## Final metrics (last evaluation)"})
    EXPECT_NE(partial.find(want), std::string::npos) << want << "\n" << partial;
  EXPECT_EQ(partial.find("token: first-token"), std::string::npos) << partial;

  // The evaluation on a device where it fails (here CUDA, absent): every command runs again on the CPU, and the
  // table and the attention verdicts are all there.
  fs::remove(dir.path() / "out/summary.txt");
  const std::string fallback = planted_peaks(dir) + "REHEARSE=1 EVAL_DEVICE=cuda WORK=" + dir.str() + "/work OUT=" + dir.str() +
                               "/out EVAL_TOKENS=400 RECOMPUTE_TOKENS=40 STREAMSINK_BIN=" + streamsink_binary() +
                               " bash " + source_dir() + "/scripts/experiments/gpu_run.sh eval > " + dir.str() +
                               "/log3.txt 2>&1";
  ASSERT_EQ(std::system(fallback.c_str()), 0) << streamsink::read_file(dir.str() + "/log3.txt");
  const std::string run_log = streamsink::read_file(dir.str() + "/out/gpu_run.log");
  EXPECT_NE(run_log.find("gpu_run: failed on device cuda; again on the CPU: streamsink eval-stream"), std::string::npos)
      << run_log;
  EXPECT_NE(run_log.find("again on the CPU: streamsink inspect-attention"), std::string::npos) << run_log;
  const std::string on_cpu = streamsink::read_file(dir.str() + "/out/summary.txt");
  for (const char* want : {"streaming 0+32", "streaming 4+28", "dense (0+400)", "recompute (1+31)",
                           "vanilla: first-token", "token: first-token"})
    EXPECT_NE(on_cpu.find(want), std::string::npos) << want << "\n" << on_cpu;
  EXPECT_EQ(on_cpu.find("| — |"), std::string::npos) << "a cell is missing\n" << on_cpu;
}

// The deadline cuts the training and evaluation phase off (here after 6 s, in the first model's training: TRAIN_S=600
// plans 600 s per model from the probe's tokens/s, so the cut lands there however fast or loaded the machine; with
// TRAIN_S=30 a probe slowed by a parallel test once planned too few steps, and the cut fell in the second model): the
// lease still ends with a report of what there is, says which phase ran out of time, and exits non-zero. And the probe
// fails in the precision asked for (one the trainer refuses, standing in for a bf16 that fails on a GPU): the lease
// goes on in fp32 and the summary says so.
TEST(GpuLeaseRehearsal, ACutOffExperimentStillEndsWithAReport) {
  TempDir dir;
  write_synthetic_corpus(dir.path() / "text", 60, 40);
  const std::string cmd = planted_peaks(dir) + "REHEARSE=1 PRECISION=bf17 WORK=" + dir.str() + "/work OUT=" + dir.str() +
                          "/out CORPUS_SRC=" + dir.str() + "/text TRAIN_S=600 TRAIN_EVAL_LIMIT_S=6 STREAMSINK_BIN=" + streamsink_binary() + " bash " +
                          source_dir() + "/scripts/gpu_lease.sh > " + dir.str() + "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string log = streamsink::read_file(dir.str() + "/log.txt");
  EXPECT_NE(rc, 0) << log;
  const std::string lease = streamsink::read_file(dir.str() + "/out/lease.txt");
  for (const char* want : {"phase=train_eval rc=124", "(time limit)", "phase=report rc=0", "status=1"})
    EXPECT_NE(lease.find(want), std::string::npos) << want << "\n" << lease << log;
  const auto total = lease.find("total_s=");  // the whole lease, which includes the 6 s phase it cut off
  ASSERT_NE(total, std::string::npos) << lease;
  EXPECT_GE(std::stol(lease.substr(total + 8)), 6) << lease;
  EXPECT_NE(lease.find("phase=probe rc=0"), std::string::npos) << lease;
  const std::string run_log = streamsink::read_file(dir.str() + "/out/gpu_run.log");
  EXPECT_NE(run_log.find("the bf17 probe failed (below); the models will train in fp32"), std::string::npos) << run_log;
  EXPECT_NE(run_log.find("train.precision"), std::string::npos) << "the refusal names the key\n" << run_log;
  const std::string summary = streamsink::read_file(dir.str() + "/out/summary.txt");
  for (const char* want : {"No streaming evaluation finished", "No attention was inspected", "sink=token: no training",
                           "precision: fp32"})
    EXPECT_NE(summary.find(want), std::string::npos) << want << "\n" << summary;
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/out/results.tar.gz"));
}

// On a machine with a GPU that the programs cannot use (here: a stand-in nvidia-smi that lists one, on this CPU), the
// cuda tests fail rather than skip (STREAMSINK_REQUIRE_CUDA=1), so such a lease cannot read as passed; without a GPU
// listed they skip and the check fails soft (status 0).
TEST(GpuCheck, CudaTestsFailOnAMachineWhoseGpuTheyCannotUseAndSkipWithoutOne) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "fakebin");
  streamsink::write_file_atomic(dir.str() + "/fakebin/nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n");
  std::filesystem::permissions(dir.str() + "/fakebin/nvidia-smi", std::filesystem::perms::owner_all);
  const std::string test_cuda = std::filesystem::path(streamsink_binary()).parent_path().string() + "/tests/test_cuda";
  const std::string common = "STREAMSINK_BIN=" + streamsink_binary() + " TEST_CUDA=" + test_cuda +
                             " DECODE_LATENCY=/bin/true WORK=" + dir.str() + "/work bash " + source_dir() +
                             "/scripts/gpu_check.sh tests";
  // as many as the binary lists (a test line is indented; a suite line is not)
  const auto listed = run_shell(test_cuda + " --gtest_list_tests");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  int n = 0;
  for (size_t at = 0; (at = listed.output.find("\n  ", at)) != std::string::npos; ++at) ++n;
  ASSERT_GE(n, 16) << listed.output;
  const std::string count = std::to_string(n);
  const auto with_gpu = run_shell("PATH=" + dir.str() + "/fakebin:$PATH OUT=" + dir.str() + "/out1 " + common);
  EXPECT_EQ(with_gpu.exit_code, 1) << with_gpu.output;
  const std::string r1 = streamsink::read_file(dir.str() + "/out1/gpu_check.txt");
  EXPECT_NE(r1.find("cuda_tests rc=1 passed=0 skipped=0 failed=" + count + " "), std::string::npos) << r1;
  EXPECT_NE(streamsink::read_file(dir.str() + "/out1/gpu_check.log").find("STREAMSINK_REQUIRE_CUDA=1"),
            std::string::npos);
  const auto without = run_shell("PATH=/usr/bin:/bin OUT=" + dir.str() + "/out2 " + common);
  EXPECT_EQ(without.exit_code, 0) << without.output;
  const std::string r2 = streamsink::read_file(dir.str() + "/out2/gpu_check.txt");
  EXPECT_NE(r2.find("cuda_tests rc=0 passed=0 skipped=" + count + " failed=0 "), std::string::npos) << r2;
}

// gpu_check.sh asks `streamsink --version` whether CUDA is usable. The answer comes before the device lines, so a
// `--version | grep -q` pipe would end at the match, the program would die of SIGPIPE writing the rest, and under
// pipefail a usable GPU would read as none (no benchmarks, status 0). Here a stand-in streamsink answers "usable" and
// then writes device lines: the benchmarks must be attempted (they fail, as the stand-in trains nothing).
TEST(GpuCheck, AUsableGpuIsSeenThoughTheVersionTextGoesOnAfterTheAnswer) {
  TempDir dir;
  streamsink::write_file_atomic(dir.str() + "/streamsink", R"(#!/bin/sh
if [ "$1" = --version ]; then
  echo 'streamsink 0.1.0'
  echo 'cuda       usable'
  sleep 0.3
  i=0
  while [ $i -lt 2000 ]; do echo 'device 0: NVIDIA H200'; i=$((i + 1)); done
  exit 0
fi
exit 3
)");
  std::filesystem::permissions(dir.str() + "/streamsink", std::filesystem::perms::owner_all);
  std::filesystem::create_directories(dir.path() / "data");
  streamsink::write_file_atomic(dir.str() + "/data/manifest.json", "{}\n");
  const auto r = run_shell("STREAMSINK_BIN=" + dir.str() + "/streamsink TEST_CUDA=/bin/true DECODE_LATENCY=/bin/false DATA=" +
                           dir.str() + "/data WORK=" + dir.str() + "/work OUT=" + dir.str() + "/out bash " +
                           source_dir() + "/scripts/gpu_check.sh bench");
  const std::string report = streamsink::read_file(dir.str() + "/out/gpu_check.txt");
  EXPECT_EQ(report.find("gpu=none"), std::string::npos) << report;
  EXPECT_NE(report.find("train_bench=failed"), std::string::npos) << report;
  EXPECT_NE(report.find("decode_bench=failed"), std::string::npos) << report;
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// Runs `gpu_check.sh tests` in `dir` with a stand-in test_cuda (a shell script printing a gtest log); the report is
// then in dir/out/gpu_check.txt and the log in dir/out/gpu_check.log.
static RunResult gpu_check_tests_with(const TempDir& dir, const std::string& fake_test_cuda) {
  streamsink::write_file_atomic(dir.str() + "/test_cuda", fake_test_cuda);
  std::filesystem::permissions(dir.str() + "/test_cuda", std::filesystem::perms::owner_all);
  return run_shell("STREAMSINK_BIN=/bin/true TEST_CUDA=" + dir.str() + "/test_cuda DECODE_LATENCY=/bin/true WORK=" +
                   dir.str() + "/work OUT=" + dir.str() + "/out bash " + source_dir() + "/scripts/gpu_check.sh tests");
}

// scripts/gpu_check.sh's count of the cuda tests, from gtest logs whose counts are known, in its two runs (the
// per-variant tests first, then the rest): 3 passed, 1 skipped, and 2 failed, each failure printed twice as gtest
// does (when it ends, and in the list at the end; a parameterised one with its "where GetParam()") yet counted once.
// Each failed test is then run once more with STREAMSINK_SDPA_CUDNN=0: here one passes that way, one still fails.
TEST(GpuCheck, CountsPassedSkippedAndFailedTestsFromTheGtestLogAndRerunsFailuresWithoutCudnn) {
  TempDir dir;
  const auto r = gpu_check_tests_with(dir, R"(#!/bin/sh
case "$2" in
--gtest_filter='*/CudaPerSink.*') cat <<'LOG'
[==========] Running 3 tests from 1 test suite.
[ RUN      ] Variants/CudaPerSink.A/none
[       OK ] Variants/CudaPerSink.A/none (1 ms)
[ RUN      ] Variants/CudaPerSink.B/zero
x.cpp:10: Failure
[  FAILED  ] Variants/CudaPerSink.B/zero, where GetParam() = 4-byte object <02-00 00-00> (2 ms)
[ RUN      ] Variants/CudaPerSink.C/token
[  SKIPPED ] Variants/CudaPerSink.C/token (0 ms)
[==========] 3 tests from 1 test suite ran. (3 ms total)
[  PASSED  ] 1 test.
[  SKIPPED ] 1 test, listed below:
[  SKIPPED ] Variants/CudaPerSink.C/token
[  FAILED  ] 1 test, listed below:
[  FAILED  ] Variants/CudaPerSink.B/zero, where GetParam() = 4-byte object <02-00 00-00>

 1 FAILED TEST
LOG
  exit 1 ;;
--gtest_filter='-*/CudaPerSink.*') cat <<'LOG'
[==========] Running 3 tests from 1 test suite.
[ RUN      ] Cuda.D
[       OK ] Cuda.D (1 ms)
[ RUN      ] Cuda.E
x.cpp:20: Failure
[  FAILED  ] Cuda.E (3 ms)
[ RUN      ] Cuda.F
[       OK ] Cuda.F (1 ms)
[==========] 3 tests from 1 test suite ran. (5 ms total)
[  PASSED  ] 2 tests.
[  FAILED  ] 1 test, listed below:
[  FAILED  ] Cuda.E

 1 FAILED TEST
LOG
  exit 1 ;;
--gtest_filter=Variants/CudaPerSink.B/zero) echo "rerun B cudnn=$STREAMSINK_SDPA_CUDNN"; [ "$STREAMSINK_SDPA_CUDNN" = 0 ] ;;
*) echo "rerun $2 cudnn=$STREAMSINK_SDPA_CUDNN"; exit 1 ;;
esac
)");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string report = streamsink::read_file(dir.str() + "/out/gpu_check.txt");
  EXPECT_NE(report.find("cuda_tests rc=1 passed=3 skipped=1 failed=2 crashed=0 seconds="), std::string::npos) << report;
  EXPECT_NE(report.find("\ncuda_test_failed: Cuda.E\ncuda_test_failed: Variants/CudaPerSink.B/zero\n"
                        "cuda_test_without_cudnn_attention: Cuda.E fails\n"
                        "cuda_test_without_cudnn_attention: Variants/CudaPerSink.B/zero passes\ngpu_check_tests_s="),
            std::string::npos)
      << report;
  EXPECT_NE(report.find(" status=1"), std::string::npos) << report;
  const std::string log = streamsink::read_file(dir.str() + "/out/gpu_check.log");
  EXPECT_LT(log.find("Variants/CudaPerSink.A/none"), log.find("Cuda.D")) << "the per-variant tests run first";
  EXPECT_NE(log.find("rerun B cudnn=0"), std::string::npos) << log;
}

// A test_cuda that dies inside a test (a CUDA fault aborts it: no [  FAILED  ] line, no summary) is named, counted,
// and fails the check; the other run's results still count.
TEST(GpuCheck, ATestThatKillsTestCudaIsNamedAsCrashed) {
  TempDir dir;
  const auto r = gpu_check_tests_with(dir, R"(#!/bin/sh
case "$2" in
--gtest_filter='*/CudaPerSink.*') cat <<'LOG'
[==========] Running 2 tests from 1 test suite.
[ RUN      ] Variants/CudaPerSink.A/none
[       OK ] Variants/CudaPerSink.A/none (1 ms)
[ RUN      ] Variants/CudaPerSink.B/zero
terminate called after throwing an instance of 'c10::Error'
LOG
  exit 134 ;;
*) cat <<'LOG'
[==========] Running 1 test from 1 test suite.
[ RUN      ] Cuda.D
[       OK ] Cuda.D (1 ms)
[==========] 1 test from 1 test suite ran. (1 ms total)
[  PASSED  ] 1 test.
LOG
  exit 0 ;;
esac
)");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string report = streamsink::read_file(dir.str() + "/out/gpu_check.txt");
  EXPECT_NE(report.find("cuda_test_crashed: Variants/CudaPerSink.B/zero (test_cuda exit 134"), std::string::npos)
      << report;
  EXPECT_NE(report.find("cuda_tests rc=134 passed=1 skipped=0 failed=0 crashed=1 "), std::string::npos) << report;
  EXPECT_NE(report.find(" status=1"), std::string::npos) << report;
}

// The lease's fallback build (scripts/gpu_build.sh, when the carried programs do not match the tree) asks for
// exactly these targets on a machine that has only the libraries .devdeps carries. A fresh configure without any
// optional package must still define them; before session 8 decode_latency existed only where Google Benchmark
// was installed (which no program uses), so that build would have stopped at once with "unknown target".
TEST(GpuBuild, TheLeaseTargetsNeedNoOptionalPackage) {
  const std::string py = venv_python();
  if (!std::filesystem::exists(py)) GTEST_SKIP() << "no venv python at " << py;
  TempDir dir;
  const auto prefix = run_shell(py + " -c 'import torch; print(torch.utils.cmake_prefix_path)'", false);
  ASSERT_EQ(prefix.exit_code, 0);
  const std::string torch_prefix = prefix.output.substr(0, prefix.output.find('\n'));
  const auto conf = run_shell("cmake -S " + source_dir() + " -B " + dir.str() + " -DCMAKE_BUILD_TYPE=Release " +
                              "-DCMAKE_PREFIX_PATH='" + torch_prefix + "' -DTORCH_CUDA_ARCH_LIST=9.0 " +
                              "-DCMAKE_DISABLE_FIND_PACKAGE_benchmark=TRUE");
  ASSERT_EQ(conf.exit_code, 0) << conf.output;
  const auto help = run_shell("cmake --build " + dir.str() + " --target help");
  ASSERT_EQ(help.exit_code, 0) << help.output;
  for (const char* target : {"streamsink", "test_cuda", "decode_latency"})
    EXPECT_NE(help.output.find(std::string("... ") + target + "\n"), std::string::npos)
        << "no target " << target << " in\n" << help.output;
}

// The lease's deadline kills training with `timeout`, which can cut metrics.jsonl's last line short. The report must
// still be written whole (review, session 8: the throughput step's json.loads raised, and under set -e the report
// stopped before summary.txt and the archive, which are all that comes back from the machine).
TEST(GpuRun, TheReportSurvivesAMetricsLineCutShort) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "work" / "none");
  std::ofstream(dir.path() / "work" / "none" / "metrics.jsonl")
      << "{\"step\": 10, \"loss\": 3.0, \"lr\": 0.001, \"grad_norm\": 1.0, \"tokens_seen\": 5120, \"tok_s\": 1000.0, "
         "\"mfu\": 0.1, \"elapsed_s\": 5.0}\n{\"step\": 20, \"loss\": 2.9, \"lr\": 0.001, \"grad_n";
  const auto r = run_shell("WORK=" + dir.str() + "/work OUT=" + dir.str() + "/out STREAMSINK_BIN=" +
                           streamsink_binary() + " bash " + source_dir() + "/scripts/experiments/gpu_run.sh report");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(std::filesystem::exists(dir.str() + "/out/summary.txt")) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.str() + "/out/results.tar.gz")) << r.output;
  const std::string summary = streamsink::read_file(dir.str() + "/out/summary.txt");
  EXPECT_NE(summary.find("sink=none steps=10 tokens=5120 tok_s=1000 mfu=0.100"), std::string::npos) << summary;
}

// gpu_check.sh's training line: the trainer's MFU (on a GPU against the data sheet) and the same work against the
// matmul rate `bench-peak --device cuda` measured on the card (its output line, as cmd_bench_peak.cpp prints it;
// test_cuda's Cuda.BenchPeaksLineFeedsTheLeasesMfuOfMatmul runs the real one): 0.4 x 989 / 791.2 = 0.500.
TEST(GpuCheck, TheTrainingLineReadsMfuAgainstTheMeasuredMatmulRateToo) {
  const auto line = [](const std::string& peak) {
    return run_shell("echo '{\"step\": 50, \"tok_s\": 123456.4, \"mfu\": 0.4}' | python3 " + source_dir() +
                     "/scripts/bench/mfu_line.py gpt2-124m bf16 '" + peak + "'")
        .output;
  };
  EXPECT_EQ(line("gpu=\"0: NVIDIA H200 (139.8 GiB)\" precision=bf16 matmul_tflops=791.2 data_sheet_tflops=989.0 "
                 "of_data_sheet=0.800 n=8192 source=measured"),
            "config=gpt2-124m precision=bf16 tok_s=123456 mfu=0.400 mfu_of_matmul=0.500\n");
  EXPECT_EQ(line("cpu=\"AMD EPYC\" threads=2 bf16_matmul_gflops=960.5 source=cache"),
            "config=gpt2-124m precision=bf16 tok_s=123456 mfu=0.400 mfu_of_matmul=0.400\n");
  // a GPU not in the data-sheet table, and a failed measurement: no figure rather than a wrong one
  EXPECT_NE(line("gpu=\"0: Future GPU\" precision=bf16 matmul_tflops=500.0 data_sheet_tflops=0.0 of_data_sheet=? n=8192 "
                 "source=measured").find("mfu_of_matmul=?\n"),
            std::string::npos);
  EXPECT_NE(line("matmul_peak=failed").find("mfu_of_matmul=?\n"), std::string::npos);
  // another precision's figure than the run's (bf16) says nothing about this run
  EXPECT_NE(line("cpu=\"AMD EPYC\" threads=2 fp32_matmul_gflops=117.1 source=cache").find("mfu_of_matmul=?\n"),
            std::string::npos);
  EXPECT_NE(line("gpu=\"0: NVIDIA H200 (139.8 GiB)\" precision=fp32 matmul_tflops=51.0 data_sheet_tflops=67.0 "
                 "of_data_sheet=0.761 n=8192 source=measured")
                .find("mfu_of_matmul=?\n"),
            std::string::npos);
}
