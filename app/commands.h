// The subcommands of the `streamsink` executable. Each is a thin shell: parse flags, build a config, call one
// library function. `argv[0]` is the subcommand's own name.
#pragma once

namespace streamsink::app {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

int cmd_version(int argc, char** argv);

}  // namespace streamsink::app
