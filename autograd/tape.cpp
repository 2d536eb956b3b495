#include "autograd/tape.h"

#include <unordered_map>

namespace dex {

Tape::Tape(Arena& arena, Device device) : m_arena(arena), m_device(device), m_backend(&backend(device)) {
  DEX_CHECK(arena.device() == device, "tape on ", device_name(device), " given an arena on ",
            device_name(arena.device()));
}

void Tape::set_autocast(DType dt) {
  DEX_CHECK(dt == DType::F32 || dt == DType::F16 || dt == DType::BF16,
            "autocast dtype must be f32 (off), f16 or bf16, got ", dtype_name(dt));
  const Backend& b = *m_backend;
  DEX_CHECK(dt == DType::F32 ||
                (b.convert_to_16 && b.convert_from_16 && b.conv3d_workspace_bytes_mixed && b.conv3d_fprop_mixed &&
                 b.conv3d_dgrad_mixed && b.conv3d_wgrad_mixed && b.conv_transpose3d_workspace_bytes_mixed &&
                 b.conv_transpose3d_fprop_mixed && b.conv_transpose3d_dgrad_mixed && b.conv_transpose3d_wgrad_mixed),
            "autocast ", dtype_name(dt), ": the ", b.name, " backend has no mixed-precision convolutions");
  m_autocast = dt;
}

bool Tape::needs_grad(std::initializer_list<const Tensor*> inputs) const {
  if (!m_grad_enabled) return false;
  bool any = false;
  for (const Tensor* t : inputs)
    if (t && t->requires_grad()) {
      any = true;
      if (t->grad_slot < 0) m_pending_params.push_back(t->grad);  // a parameter: the next record may write it
    }
  return any;
}

Tensor Tape::alloc(const Tensor& shape, bool with_grad) {
  Tensor t = shape;
  t.device = m_device;
  t.data = m_arena.alloc<float>(static_cast<size_t>(t.numel()));
  t.grad = nullptr;
  t.grad_slot = -1;
  if (with_grad) {
    t.grad = m_arena.alloc<float>(static_cast<size_t>(t.numel()));
    t.grad_slot = static_cast<int>(m_written.size());
    m_written.push_back(0);
  }
  return t;
}

Tensor Tape::alias(const Tensor& x, bool with_grad) {
  Tensor t = x;
  t.grad = nullptr;
  t.grad_slot = -1;
  if (with_grad) {
    t.grad = m_arena.alloc<float>(static_cast<size_t>(t.numel()));
    t.grad_slot = static_cast<int>(m_written.size());
    m_written.push_back(0);
  }
  return t;
}

void Tape::record(std::function<void()> backward) {
  m_records.push_back(std::move(backward));
  m_record_params.push_back(m_param_grads.size());
  m_param_grads.insert(m_param_grads.end(), m_pending_params.begin(), m_pending_params.end());
  m_pending_params.clear();
}

bool Tape::grad_ready(const Tensor& t) const {
  if (!t.grad) return false;
  if (t.grad_slot < 0) return true;
  DEX_CHECK(t.grad_slot < static_cast<int>(m_written.size()), "gradient slot ", t.grad_slot,
            " is not from this tape (cleared since?)");
  return m_written[t.grad_slot] != 0;
}

GradMode Tape::write_mode(const Tensor& t) {
  DEX_CHECK(t.grad, "write_mode on a tensor without a gradient");
  if (t.grad_slot < 0) return GradMode::Accumulate;
  DEX_CHECK(t.grad_slot < static_cast<int>(m_written.size()), "gradient slot ", t.grad_slot, " is not from this tape");
  if (m_written[t.grad_slot]) return GradMode::Accumulate;
  m_written[t.grad_slot] = 1;
  return GradMode::Overwrite;
}

void Tape::backward() {
  if (!m_hook) {
    for (size_t i = m_records.size(); i-- > 0;) m_records[i]();
  } else {
    // Writers left per parameter gradient; a gradient is final once its last (earliest recorded) writer has run.
    std::unordered_map<const float*, int> writers;
    for (const float* g : m_param_grads) ++writers[g];
    std::vector<const float*> final_grads;
    for (size_t i = m_records.size(); i-- > 0;) {
      m_records[i]();
      final_grads.clear();
      const size_t end = i + 1 < m_record_params.size() ? m_record_params[i + 1] : m_param_grads.size();
      for (size_t k = m_record_params[i]; k < end; ++k)
        if (--writers[m_param_grads[k]] == 0) final_grads.push_back(m_param_grads[k]);
      m_hook(final_grads);
    }
  }
  m_records.clear();
  m_record_params.clear();
  m_param_grads.clear();
  m_pending_params.clear();
}

void Tape::clear() {
  m_records.clear();
  m_written.clear();
  m_record_params.clear();
  m_param_grads.clear();
  m_pending_params.clear();
}

}  // namespace dex
