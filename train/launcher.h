// The local launcher behind `streamsink launch`: N processes on this machine with torchrun's variables set (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT), their output lines prefixed with
// "[rank N] ", SIGINT/SIGTERM forwarded (a second one sends SIGKILL), and when one fails the others stopped (SIGTERM,
// then SIGKILL after a grace).
#pragma once
#include <string>
#include <vector>

namespace streamsink {

struct LaunchConfig {
  int nproc = 1;                  // processes to start
  int master_port = 0;            // MASTER_PORT; 0 picks a free port
  std::string program;            // executable to run (`streamsink launch` uses /proc/self/exe)
  std::vector<std::string> args;  // its arguments (argv[1..])
  bool prefix_output = true;      // prefix every output line with "[rank N] " (stdout and stderr kept apart)
  double grace_seconds = 5.0;     // after a rank fails, how long the others get between SIGTERM and SIGKILL
};

// Runs the job to completion. Returns 0 when every rank exits 0; otherwise prints which rank failed first and how
// (exit code or signal) to stderr and returns 1 (or 128+signal when the launcher itself was interrupted).
int launch(const LaunchConfig& cfg);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and read it back).
int free_local_port();

// "exited with code 3" / "was killed by signal 9 (SIGKILL)", from a waitpid() status.
std::string describe_exit(int status);

}  // namespace streamsink
