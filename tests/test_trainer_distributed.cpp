// ctest-labels: integration slow
// Data parallelism end to end: two Gloo ranks with micro-batch b end with the same parameters as one process with
// 2b, and as one process accumulating 2 × b (fp32, 1e-6).
#include <gtest/gtest.h>

#include "tests/checkpoint_compare.h"
#include "tests/corpus_fixture.h"

using namespace streamsink;
using namespace streamsink::testing;

TEST(TrainerDistributed, TwoRanksEqualOneRankWithTwiceTheBatchAndAccumulation) {
  TempDir dir;
  const std::string common = "--set train.steps=5 --set train.eval_interval=0 --set train.checkpoint_interval=1 "
                             "--set train.keep_checkpoints=5 --set train.log_interval=1 "
                             "--set train.threads=1 --set train.timeout_s=60";
  auto one = run_streamsink(tiny_train_args(dir.str() + "/one", common + " --set train.batch_size=8"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto accum = run_streamsink(
      tiny_train_args(dir.str() + "/accum", common + " --set train.batch_size=4 --set train.grad_accum=2"));
  ASSERT_EQ(accum.exit_code, 0) << accum.output;
  auto two = run_streamsink("launch --nproc 2 -- " +
                            tiny_train_args(dir.str() + "/two", common + " --set train.batch_size=4"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("2 rank(s) via streamsink-launch (gloo)"), std::string::npos) << two.output;

  // Two ranks and accumulation reduce the same per-half means in the same order: identical.
  EXPECT_LT(max_param_diff(dir.str() + "/two", dir.str() + "/accum", "step_0000005"), 1e-6);
  // One process with 2b takes the mean of 8 sequences at once, the others the mean of two means of 4: the same
  // gradient up to fp32 summation order. Adam divides by sqrt(v), so its first steps are nearly sign(g) · lr and
  // relative rounding differences in small gradient entries become absolute ones in the weights: measured 3.9e-6
  // after one step and 4.0e-6 after five (weights of magnitude up to 1), not the 1e-6 an SGD step would keep.
  EXPECT_LT(max_param_diff(dir.str() + "/one", dir.str() + "/two", "step_0000001"), 1e-5);
  EXPECT_LT(max_param_diff(dir.str() + "/one", dir.str() + "/accum", "step_0000001"), 1e-5);
  EXPECT_LT(max_param_diff(dir.str() + "/one", dir.str() + "/two", "step_0000005"), 1e-5);
  // The logged losses are the mean over every rank's sequences (the ranks' sum divided by the world): one process
  // with 2b sees the same 8 sequences a step. The validation loss is the mean over the val split's first
  // eval_sequences windows whatever the batch and the ranks, so all three agree (until session 10 the set was
  // eval_batches x batch x ranks windows, and the accumulating process, with batches of 4, scored half of them).
  const auto r1 = training_records(dir.str() + "/one"), r2 = training_records(dir.str() + "/two"),
             ra = training_records(dir.str() + "/accum");
  for (int64_t s : {1, 5}) {
    ASSERT_TRUE(r1.count(s) && r2.count(s) && ra.count(s)) << "step " << s;
    const double l1 = r1.at(s)["loss"].get<double>();
    EXPECT_NEAR(r2.at(s)["loss"].get<double>(), l1, 1e-4 * l1) << "step " << s;
    EXPECT_NEAR(ra.at(s)["loss"].get<double>(), l1, 1e-4 * l1) << "step " << s;
  }
  const double v1 = last_val_loss(dir.str() + "/one");
  ASSERT_GT(v1, 0);
  EXPECT_NEAR(last_val_loss(dir.str() + "/two"), v1, 1e-4 * v1);
  EXPECT_NEAR(last_val_loss(dir.str() + "/accum"), v1, 1e-4 * v1);
  // and training moved the parameters (the comparisons are not between untouched initialisations)
  EXPECT_GT(max_weight_diff(dir.str() + "/one/checkpoints/step_0000001", dir.str() + "/one/checkpoints/step_0000005"), 1e-4);
}

// A world of one started by the launcher builds a Gloo group of one (as torchrun with DDP does; on a GPU the same
// path gives the cuda test its NCCL group) and trains exactly as a single process: the mean over one rank is the
// rank's own gradient, so the parameters are bit for bit the same.
TEST(TrainerDistributed, LaunchedWorldOfOneTrainsThroughItsGroupExactlyAsASingleProcess) {
  TempDir dir;
  const std::string common = "--set train.steps=3 --set train.eval_interval=0 --set train.checkpoint_interval=3 "
                             "--set train.threads=1 --set train.timeout_s=60 --set train.batch_size=4";
  auto single = run_streamsink(tiny_train_args(dir.str() + "/single", common));
  ASSERT_EQ(single.exit_code, 0) << single.output;
  EXPECT_NE(single.output.find("1 rank(s) via single (none)"), std::string::npos) << single.output;
  auto launched = run_streamsink("launch --nproc 1 -- " + tiny_train_args(dir.str() + "/launched", common));
  ASSERT_EQ(launched.exit_code, 0) << launched.output;
  EXPECT_NE(launched.output.find("1 rank(s) via streamsink-launch (gloo)"), std::string::npos) << launched.output;
  EXPECT_EQ(max_param_diff(dir.str() + "/single", dir.str() + "/launched", "step_0000003"), 0.0);
}
