// The tape (STYLE.md §8): a std::vector of backward closures, each capturing its op's saved context (tensor
// handles and arena pointers). No graph optimiser, no dispatch on op names. Every op asks the tape whether to
// record (grad mode on and some input wants a gradient); `backward()` replays the records in reverse.
//
// Gradient write rule: parameter gradients (grad_slot < 0) always accumulate, so micro-batches add up and
// zero_grad is explicit. An activation's gradient is overwritten by its first writer in the backward and
// accumulated by every later one: this is what makes fan-out (skips, residual branches) correct.
#pragma once
#include <functional>
#include <initializer_list>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/arena.h"
#include "kernels/backend.h"

namespace dex {

class Tape {
 public:
  explicit Tape(Arena& arena, Device device = Device::CPU);

  Arena& arena() { return m_arena; }
  const Backend& be() const { return *m_backend; }
  Device device() const { return m_device; }

  // Autocast (mixed precision, as torch.autocast does it for this network): DType::F32 = off; F16 or BF16: the
  // convolutions (conv3d, conv_transpose3d, every pass) take 16-bit operands and accumulate in fp32, their outputs
  // come back as fp32 (rounded through 16 bits); everything else stays fp32, weight gradients included. Throws
  // when the backend has no mixed-precision entries. An op captures the dtype at its forward.
  DType autocast() const { return m_autocast; }
  void set_autocast(DType dt);

  bool grad_enabled() const { return m_grad_enabled; }
  void set_grad_enabled(bool on) { m_grad_enabled = on; }
  // True when an op over `inputs` must record a backward.
  bool needs_grad(std::initializer_list<const Tensor*> inputs) const;

  // A new activation with `shape` in the arena; with `with_grad` it also gets a gradient buffer and a slot.
  Tensor alloc(const Tensor& shape, bool with_grad);
  // A tensor sharing x's data (an in-place op's output) with, if `with_grad`, its own gradient buffer and slot.
  Tensor alias(const Tensor& x, bool with_grad);
  // Arena scratch (workspace) for one kernel call; release with arena().release_to(mark).
  void* scratch(size_t bytes) { return bytes ? m_arena.allocate(bytes) : nullptr; }

  void record(std::function<void()> backward);
  size_t size() const { return m_records.size(); }

  // Backward hook (data parallel: train/grad_buckets.h launches a bucket's all-reduce as soon as its gradients are
  // final). Called after every record's closure has run, with the parameter gradients (the grad pointers of tensors
  // with grad_slot < 0) whose last writer that record was (often none: the call also lets a communicator progress).
  // A parameter is attributed to the first record made after a needs_grad() that returned true for it; every op asks
  // needs_grad over all its inputs just before recording itself, so a gradient is never reported before its op's
  // backward has run. A parameter used by several ops is reported after the last of them. Empty: no hook.
  using BackwardHook = std::function<void(const std::vector<const float*>& final_param_grads)>;
  void set_backward_hook(BackwardHook hook) { m_hook = std::move(hook); }

  // Backward side: has `t`'s gradient been written yet (parameters: always true)?
  bool grad_ready(const Tensor& t) const;
  // The mode the next writer of t.grad must use; marks the gradient written.
  GradMode write_mode(const Tensor& t);
  // Marks t.grad as written by the caller (a loss seeding the backward).
  void mark_written(const Tensor& t) { write_mode(t); }

  // Replays every record in reverse order, then forgets them (the arena is the caller's to reset).
  void backward();
  // Forgets the records and gradient slots without running them.
  void clear();

 private:
  Arena& m_arena;
  Device m_device;
  const Backend* m_backend;
  bool m_grad_enabled = true;
  DType m_autocast = DType::F32;
  std::vector<std::function<void()>> m_records;
  std::vector<uint8_t> m_written;  // per activation gradient slot
  // Backward hook bookkeeping: record i owns m_param_grads[m_record_params[i] .. m_record_params[i + 1]).
  BackwardHook m_hook;
  mutable std::vector<const float*> m_pending_params;  // from needs_grad(), taken by the next record()
  std::vector<const float*> m_param_grads;
  std::vector<size_t> m_record_params;
};

// RAII no-grad mode: inference and the click-simulation forward record nothing and allocate no gradients.
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& tape) : m_tape(tape), m_prev(tape.grad_enabled()) { tape.set_grad_enabled(false); }
  ~NoGradGuard() { m_tape.set_grad_enabled(m_prev); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& m_tape;
  bool m_prev;
};

}  // namespace dex
