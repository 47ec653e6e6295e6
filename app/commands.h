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
int cmd_launch(int argc, char** argv);
int cmd_tokenizer(int argc, char** argv);  // tokenizer train
int cmd_data(int argc, char** argv);       // data prepare | inspect
int cmd_train(int argc, char** argv);
int cmd_bench_peak(int argc, char** argv);
int cmd_eval_stream(int argc, char** argv);        // infer/: streaming evaluation
int cmd_generate(int argc, char** argv);           // infer/: text generation through a streaming cache
int cmd_chat(int argc, char** argv);               // infer/: multi-round chat on stdin
int cmd_inspect_attention(int argc, char** argv);  // infer/: attention sinks per layer and head
int cmd_export_hf(int argc, char** argv);          // infer/: checkpoint -> Hugging Face Llama folder
int cmd_import_hf(int argc, char** argv);          // infer/: Hugging Face Llama folder -> checkpoint

}  // namespace streamsink::app
