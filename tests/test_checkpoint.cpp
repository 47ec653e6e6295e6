// Checkpoints (train/checkpoint.h) on the CPU: a round trip restores the weights, the state and the random stream
// (the CPU generator continues exactly where it was when the checkpoint was written, as an uninterrupted run's would);
// a missing checkpoint file is an error naming it. The GPU's generator: test_cuda.cpp; a corrupt generator state:
// test_bad_input.cpp.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/checkpoint_fixture.h"

using namespace streamsink;
using namespace streamsink::testing;

TEST(Checkpoint, ResumeRestoresWeightsStateAndTheCpuRandomStream) {
  expect_random_stream_continues_after_resume(c10::Device(c10::kCPU));
}

TEST(Checkpoint, ACpuCheckpointHoldsNoCudaState) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  const auto path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, TrainState{}, "", 1);
  const auto o = load_safetensors(path + "/optimizer.safetensors");
  EXPECT_EQ(o.count("rng.cpu"), 1u);
  EXPECT_EQ(o.count("rng.cuda"), 0u);
}

TEST(Checkpoint, AMissingOptimizerFileIsNamed) {
  TempDir dir;
  CheckpointSubject a(c10::Device(c10::kCPU));
  const auto path = save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, TrainState{}, "", 1);
  std::filesystem::remove(path + "/optimizer.safetensors");
  CheckpointSubject b(c10::Device(c10::kCPU));
  TrainState s;
  expect_error([&] { load_checkpoint(path, b.model, *b.opt, s); }, {"optimizer.safetensors"});
}
