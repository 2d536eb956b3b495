// ParameterSet: every learnable tensor of a model in ONE allocation, and their gradients in ONE more
// (STYLE.md §4, llm.c malloc_and_point_parameters): layers declare (name, PyTorch shape, kind) while the
// model is built, `allocate()` sizes both buffers from that table and carves the tensors. The contiguous
// gradient buffer makes zero_grad, the overflow check, the optimiser and the all-reduce one call each.
// Names and shapes are MONAI's state_dict names and PyTorch layouts; the tensors themselves use dex's
// internal layouts (conv KTRSC, transposed conv [Cout][taps][Cin]), converted once on import/export.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "kernels/arena.h"
#include "layers/state_dict.h"

namespace dex {

enum class ParamKind : uint8_t {
  Conv,           // PyTorch [K][C][kD][kH][kW]  -> dex [K][kD][kH][kW][C]
  ConvTranspose,  // PyTorch [C][K][kD][kH][kW]  -> dex [K][kD][kH][kW][C]   (C in, K out)
  Bias,           // [K], same both sides (initialised to 0)
  NormWeight,     // [C], same both sides (affine instance norm; initialised to 1)
};

struct ParamSpec {
  std::string name;
  std::vector<int64_t> torch_shape;
  ParamKind kind;
  int64_t offset = 0;  // in floats, into the parameter and gradient buffers
  int64_t numel = 0;
};

class ParameterSet {
 public:
  ParameterSet() = default;
  ParameterSet(const ParameterSet&) = delete;
  ParameterSet& operator=(const ParameterSet&) = delete;

  // Build phase: returns the index of the new parameter. Names must be unique.
  int declare(const std::string& name, std::vector<int64_t> torch_shape, ParamKind kind);
  // One buffer for the values, one for the gradients (zeroed), on `device`.
  void allocate(Device device);
  bool allocated() const { return m_values.data() != nullptr; }

  int size() const { return static_cast<int>(m_specs.size()); }
  const ParamSpec& spec(int i) const { return m_specs.at(i); }
  const std::vector<ParamSpec>& specs() const { return m_specs; }
  int index_of(const std::string& name) const;  // -1 when absent
  // The tensor (internal layout) with data and grad pointing into the two buffers.
  const Tensor& tensor(int i) const;

  int64_t numel() const { return m_numel; }
  Device device() const { return m_device; }
  float* values() const { return m_values.as<float>(); }
  float* grads() const { return m_grads.as<float>(); }
  size_t bytes() const { return static_cast<size_t>(m_numel) * sizeof(float); }
  void zero_grad();

  // Host copies in PyTorch layout (and back). `torch` must have spec(i).numel elements.
  std::vector<float> get_torch(int i) const;
  std::vector<float> grad_torch(int i) const;  // the gradient, same layout conversion
  void set_torch(int i, const std::vector<float>& torch);

  // Export: name -> PyTorch shape + data. Import: every name must be known, present once and well shaped;
  // unknown, missing and mis-shaped tensors throw InputError naming the tensor. `skip_layers.*` aliases
  // are accepted (canonicalised first).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& sd);

 private:
  std::vector<float> to_torch(int i, const float* src) const;

  std::vector<ParamSpec> m_specs;
  std::vector<Tensor> m_tensors;
  int64_t m_numel = 0;
  Device m_device = Device::CPU;
  Buffer m_values, m_grads;
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace dex
