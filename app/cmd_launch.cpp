// `streamsink launch --nproc N [--master-port P] [--exec PROGRAM] -- ARGS...`: N local ranks of
// `streamsink ARGS...` (or of PROGRAM ARGS..., as torchrun --no-python) with torchrun's variables set.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <climits>
#include <string>
#include <vector>

#include "app/commands.h"
#include "common/error.h"
#include "train/launcher.h"

namespace streamsink::app {

namespace {

std::string self_executable() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error("launch: cannot read /proc/self/exe to find the streamsink executable (use --exec)");
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace

int cmd_launch(int argc, char** argv) {
  CLI::App app{"Start N local ranks of a streamsink command (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT "
               "set as torchrun does); if one fails, the others are stopped",
               "streamsink launch"};
  LaunchConfig cfg;
  bool no_prefix = false;
  std::vector<std::string> command;
  app.add_option("--nproc", cfg.nproc, "number of processes (ranks) to start")->required()->check(CLI::Range(1, 1024));
  app.add_option("--master-port", cfg.master_port, "port of the rendezvous store (default: a free port)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--exec", cfg.program, "run this program instead of streamsink (as torchrun --no-python)");
  app.add_option("--grace", cfg.grace_seconds,
                 "seconds between SIGTERM and SIGKILL when stopping the other ranks after one failed (a forwarded "
                 "signal waits for them; a second one kills them)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_flag("--no-prefix", no_prefix, "do not prefix output lines with [rank N]");
  app.add_option("command", command, "after --: the streamsink subcommand and its arguments (or PROGRAM's arguments)");
  app.footer("example: streamsink launch --nproc 2 -- train configs/tiny.yaml --out runs/tiny");
  CLI11_PARSE(app, argc, argv);
  cfg.prefix_output = !no_prefix;
  if (cfg.program.empty()) {
    if (command.empty()) throw Error("launch: nothing to run; e.g. streamsink launch --nproc 2 -- train X.yaml --out RUN");
    cfg.program = self_executable();
  }
  cfg.args = command;
  return launch(cfg);
}

}  // namespace streamsink::app
