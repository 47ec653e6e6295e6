// `streamsink train CONFIG.yaml [--set section.key=value]... [--resume auto|PATH] [--out DIR] [--profile FIRST:COUNT]`
#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "train/step_profiler.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace streamsink::app {

int cmd_train(int argc, char** argv) {
  CLI::App app{"Pretrain a model from a run config (model: and train: sections). Runs on one process, or N under\n"
               "torchrun --no-python, srun, or `streamsink launch` (data parallel over c10d).",
               "streamsink train"};
  std::string config, out, resume, profile;
  std::vector<std::string> sets;
  int64_t stop_after = -1;
  app.add_option("config", config, "run config YAML (configs/*.yaml)")->required();
  app.add_option("--set", sets, "override a key: --set model.sink=token --set train.steps=60");
  app.add_option("--out", out, "run folder (config, metrics.jsonl, checkpoints/)")->required();
  app.add_option("--resume", resume, "auto (the run folder's latest checkpoint, if any) or a checkpoint path");
  app.add_option("--stop-after", stop_after,
                 "stop cleanly once step N of the run is done (counted from the run's start, resumes included; "
                 "checkpoint written)")
      ->check(CLI::PositiveNumber);
  app.add_option("--profile", profile,
                 "FIRST:COUNT: profile steps FIRST..FIRST+COUNT-1 with LibTorch's profiler into OUT/profile.txt "
                 "(where the time goes) and OUT/profile.json (a Chrome trace)");
  CLI11_PARSE(app, argc, argv);
  const auto [profile_first, profile_count] = parse_profile_window(profile);
  auto cfg = load_run_config(config, sets);
  return train(cfg, {out, resume, stop_after, profile_first, profile_count});
}

}  // namespace streamsink::app
