#include "autograd/op_registry.h"

namespace dex {

const std::vector<OpInfo>& registered_ops() {
  static const std::vector<OpInfo> ops = {
      {"conv3d", true},     {"conv_transpose3d", true}, {"instance_norm", true}, {"leaky_relu", true},
      {"add", true},        {"concat", true},           {"bias_add", true},      {"dice_ce", true},
  };
  return ops;
}

}  // namespace dex
