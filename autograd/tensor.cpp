#include "autograd/tensor.h"

namespace dex {

Tensor::Tensor(std::initializer_list<int64_t> shape, Layout l) : layout(l) {
  DEX_CHECK(shape.size() >= 1 && shape.size() <= kMaxDims, "tensor rank ", shape.size(), " not in [1, 5]");
  for (int64_t d : shape) {
    DEX_CHECK(d >= 0, "negative tensor dimension ", d);
    dims[ndim++] = d;
  }
}

int64_t Tensor::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[i];
  return n;
}

bool Tensor::same_shape(const Tensor& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace dex
