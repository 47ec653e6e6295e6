// `data prepare`: text files -> token shards train_/val_/test_NNNNNN.bin + manifest.json in one directory.
//
// A document (one file) goes to a split by a stable hash of its path relative to its input root, so adding files
// never moves the others; with at least 3 documents, val and test (when their fraction is > 0) get at least one
// each. A document whose text (after any gzip decompression) is exactly that of an earlier one, in the order
// find_documents lists them (input by input, then by relative path), is dropped before the split, as binary files
// are: the first copy stays, in the split its own path picks, so the same text is never in two splits nor counted
// twice (empty documents are all kept). The one exception to "adding files never moves the others": a new copy
// listed before an existing text takes its place, and the text moves to the new copy's split (a test shows it).
// Every document is followed by <eos>. Encoding runs on a pool of threads;
// the output is byte-for-byte the same whatever the thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace streamsink {

struct PrepareConfig {
  std::string tokenizer;               // the sentencepiece .model
  std::vector<std::string> inputs;     // files or folders (walked recursively), plain or .gz
  std::string out;                     // output directory (created)
  double val_fraction = 0.005;         // expected share of documents in val
  double test_fraction = 0.005;        // expected share of documents in test
  int64_t shard_tokens = 100'000'000;  // tokens per shard (the last one of a split is shorter)
  int num_threads = 0;                 // 0 = all cores
  int64_t chunk_bytes = 1 << 18;       // big documents are encoded in pieces of about this size, cut after a
                                       // '\n', where the tokenizer gives the same ids so (newline_cuts_are_exact;
                                       // else whole); tests shrink it
};

struct PrepareStats {
  int64_t docs[3];         // index 0 train, 1 val, 2 test
  int64_t tokens[3];       // <eos> included
  int64_t duplicate_docs;  // documents dropped as exact copies of an earlier one
  double seconds;
};

PrepareStats prepare_data(const PrepareConfig& cfg);

constexpr const char* kSplitNames[3] = {"train", "val", "test"};

// What manifest.json (written last by prepare_data) says about a data directory.
struct Manifest {
  std::string path;                // DIR/manifest.json
  std::string tokenizer_path;      // as prepare saw it (absolute)
  std::string tokenizer_checksum;  // Tokenizer::checksum() of that file
  int64_t vocab_size = 0;
  std::string dtype;               // "u16" | "u32"
  int64_t docs[3] = {0, 0, 0};
  int64_t tokens[3] = {0, 0, 0};
  int64_t duplicate_docs = -1;     // exact copies dropped; -1: a manifest from before prepare looked for them
  std::vector<std::string> shards[3];       // file names inside the directory
  std::vector<int64_t> shard_tokens[3];     // token count of each
};
// Error naming the file when missing or malformed.
Manifest read_manifest(const std::string& data_dir);
// Error naming both files when the tokenizer at `tokenizer_path` is not the one the data was prepared with: its
// checksum differs from the manifest's and its id -> piece table from that of the data's own copy (other bytes with
// the same pieces, a re-serialized model say, pass).
void check_manifest_tokenizer(const Manifest& m, const std::string& tokenizer_path);
// Opens every shard the manifest lists and checks headers, sizes and counts against it; Error on the first
// disagreement, naming the shard.
void verify_data_dir(const Manifest& m);

// The split (0 train, 1 val, 2 test) a document falls in by hash alone, and the hash's point in [0, 1).
double split_point(const std::string& relpath);
int split_by_hash(const std::string& relpath, double val_fraction, double test_fraction);

}  // namespace streamsink
