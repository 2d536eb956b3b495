// Tensor: a shape plus pointers, never owning memory. Activations are NDHWC (N, D, H, W, C); weights keep
// dex's internal layouts (conv KTRSC, transposed conv [Cout][taps][Cin], bias [C]). `data` points into the
// per-step Arena or into the long-lived parameter buffer; `grad` (null: no gradient wanted) likewise.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/arena.h"
#include "kernels/common.h"

namespace dex {

enum class Layout : uint8_t { NDHWC, Weight };

struct Tensor {
  static constexpr int kMaxDims = 5;
  int64_t dims[kMaxDims] = {0, 0, 0, 0, 0};
  int ndim = 0;
  Layout layout = Layout::NDHWC;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  float* data = nullptr;
  float* grad = nullptr;
  // Activations: the tape slot that records whether `grad` was written yet (first writer overwrites, later
  // writers accumulate: fan-out). -1: a parameter, whose gradient always accumulates.
  int grad_slot = -1;

  Tensor() = default;
  Tensor(std::initializer_list<int64_t> shape, Layout l = Layout::NDHWC);

  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool defined() const { return data != nullptr; }
  bool requires_grad() const { return grad != nullptr; }
  // NDHWC accessors (valid for Layout::NDHWC, ndim 5).
  int N() const { return static_cast<int>(dims[0]); }
  int D() const { return static_cast<int>(dims[1]); }
  int H() const { return static_cast<int>(dims[2]); }
  int W() const { return static_cast<int>(dims[3]); }
  int C() const { return static_cast<int>(dims[4]); }
  int64_t voxels() const { return dims[0] * dims[1] * dims[2] * dims[3]; }   // N*D*H*W
  int64_t spatial() const { return dims[1] * dims[2] * dims[3]; }           // D*H*W
  bool same_shape(const Tensor& o) const;
  std::string shape_str() const;
};

// An NDHWC activation shape.
inline Tensor ndhwc(int64_t N, int64_t D, int64_t H, int64_t W, int64_t C) { return Tensor({N, D, H, W, C}); }

}  // namespace dex
