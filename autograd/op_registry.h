// Every differentiable op dex has, by name. tests/autograd/test_op_registry.cpp walks this list: each op must
// have a finite-difference case there (a forward without a checked backward cannot ship, cf. ggml #1514).
// Adding an op: write autograd/ops/<op>.{h,cpp} (forward next to backward) and add a row here.
#pragma once
#include <string>
#include <vector>

namespace dex {

struct OpInfo {
  std::string name;    // the file stem in autograd/ops/
  bool has_backward;   // records a backward on the tape when an input wants a gradient
};

const std::vector<OpInfo>& registered_ops();

}  // namespace dex
