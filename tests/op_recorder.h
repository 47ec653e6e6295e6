// Which ATen operators a piece of code dispatches, counted by name ("aten::scaled_dot_product_attention"): the
// tests that check which attention path the model takes (tests/test_transformer.cpp on the CPU, tests/test_cuda.cpp
// on a GPU) look at the ops that ran, not only at outputs that every path computes alike.
//
// It is a thread-local RecordFunction callback (the hook LibTorch's profiler uses): every operator call that goes
// through the dispatcher on the recording thread is counted, the ones an op calls inside itself included (SDPA
// calls its backend kernel, e.g. aten::_scaled_dot_product_flash_attention_for_cpu). Ops dispatched on other threads
// (at::parallel_for workers, autograd's backward threads) are not counted: the model's forward dispatches its ops
// on the caller's thread. A redispatch (autograd or autocast passing a call on to the next dispatch key) is not a
// new call, but autocast's wrappers call the op afresh after casting, so under autocast an op on its cast lists
// (SDPA, softmax) may count twice for one call in the model; tests under autocast compare such counts with >=.
#pragma once
#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace streamsink::testing {

class OpRecorder {
 public:
  // Records from construction to destruction, on this thread; one recorder at a time per thread.
  OpRecorder() {
    TORCH_CHECK(active() == nullptr, "OpRecorder: another recorder is already recording on this thread");
    active() = this;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(&OpRecorder::on_start).scopes({at::RecordScope::FUNCTION}));
  }
  ~OpRecorder() {
    at::removeCallback(handle_);
    active() = nullptr;
  }
  OpRecorder(const OpRecorder&) = delete;
  OpRecorder& operator=(const OpRecorder&) = delete;

  // Calls of the op so far (0 for an op never seen).
  int64_t count(const std::string& op) const {
    auto it = counts_.find(op);
    return it == counts_.end() ? 0 : it->second;
  }
  const std::map<std::string, int64_t>& counts() const { return counts_; }

  // "aten::a x2, aten::b x1, ..." of the ops whose names contain `part` (all by default), for failure messages.
  std::string summary(const std::string& part = "") const {
    std::string s;
    for (const auto& [name, n] : counts_)
      if (name.find(part) != std::string::npos) s += (s.empty() ? "" : ", ") + name + " x" + std::to_string(n);
    return s.empty() ? "(none recorded)" : s;
  }

 private:
  // The recorder of this thread, or null. RecordFunction's start callback is a plain function pointer, so it
  // finds its recorder here; a worker thread that inherits the callback finds none and records nothing.
  static OpRecorder*& active() {
    thread_local OpRecorder* current = nullptr;
    return current;
  }
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    if (OpRecorder* r = active()) ++r->counts_[fn.name()];
    return nullptr;
  }

  at::RecordFunctionGuard enabled_{true};  // recording on, whatever an enclosing scope set
  at::CallbackHandle handle_ = at::INVALID_CALLBACK_HANDLE;
  std::map<std::string, int64_t> counts_;
};

}  // namespace streamsink::testing
