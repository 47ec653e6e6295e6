// libFuzzer target: the YAML run config loader (train/train_config.h load_run_config, which runs
// model_config_from_yaml, the train fields and both validate()s). A bad file must end in an exception (the
// executable prints it and exits 1), never a crash, a sanitizer report or a hang. A config that loads must survive
// its own round trip: run_config_to_yaml, loaded again, prints the same.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "scripts/fuzz/fuzz_input_file.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = streamsink::fuzz::scratch_path("config.yaml");
  static const std::string path2 = streamsink::fuzz::scratch_path("config2.yaml");
  streamsink::fuzz::write_input(path, data, size);
  std::string yaml;
  try {
    yaml = streamsink::run_config_to_yaml(streamsink::load_run_config(path));
  } catch (const std::exception&) {
    return 0;  // rejected with a message: fine
  }
  streamsink::fuzz::write_input(path2, reinterpret_cast<const uint8_t*>(yaml.data()), yaml.size());
  try {
    const std::string again = streamsink::run_config_to_yaml(streamsink::load_run_config(path2));
    if (again != yaml) {
      std::fprintf(stderr, "round trip changed the config:\n--- first\n%s--- second\n%s", yaml.c_str(), again.c_str());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "a resolved config does not load again: %s\n--- config\n%s", e.what(), yaml.c_str());
    std::abort();
  }
  return 0;
}
