// A checkpoint round trip on a device, for test_checkpoint (CPU) and test_cuda (GPU): after a resume, the random
// stream of the device's generator continues exactly where it was when the checkpoint was written.
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "model/transformer.h"
#include "tests/helpers.h"
#include "tests/model_fixtures.h"
#include "train/adamw.h"
#include "train/checkpoint.h"

namespace streamsink::testing {

// The model, its optimizer and a run config, on `device`.
struct CheckpointSubject {
  RunConfig cfg;
  Transformer model{nullptr};
  std::unique_ptr<AdamW> opt;
  explicit CheckpointSubject(c10::Device device) {
    cfg.model = tiny_config();
    model = Transformer(cfg.model);
    model->to(device);
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    opt = std::make_unique<AdamW>(named, AdamWOptions{});
  }
};

// Saves a checkpoint, draws x1 on `device`, draws more (as the rest of an interrupted run would), loads the
// checkpoint into a fresh subject and draws x2: x2 must equal x1 bit for bit.
inline void expect_random_stream_continues_after_resume(c10::Device device) {
  TempDir dir;
  at::manual_seed(1234);
  CheckpointSubject a(device);
  TrainState state;
  state.step = 7;
  (void)at::randn({16}, at::TensorOptions().device(device));  // the generator is somewhere past its seed
  save_checkpoint(dir.str(), a.cfg, a.model, *a.opt, state, "", 2);
  const auto x1 = at::randn({64}, at::TensorOptions().device(device)).cpu();
  (void)at::randn({1000}, at::TensorOptions().device(device));

  at::manual_seed(99);  // a new process: another seed, other draws
  CheckpointSubject b(device);
  TrainState resumed;
  load_checkpoint(latest_checkpoint(dir.str()), b.model, *b.opt, resumed);
  const auto x2 = at::randn({64}, at::TensorOptions().device(device)).cpu();
  EXPECT_EQ(resumed.step, 7);
  EXPECT_TRUE(at::equal(x1, x2)) << "the random stream after resume differs from the uninterrupted one";
  auto pa = a.model->named_parameters();
  for (const auto& p : b.model->named_parameters()) EXPECT_TRUE(at::equal(p.value().cpu(), pa[p.key()].cpu())) << p.key();
}

}  // namespace streamsink::testing
