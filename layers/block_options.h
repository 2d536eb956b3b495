// Options shared by the DynUNet blocks.
#pragma once

namespace dex {

struct BlockOptions {
  float negative_slope = 0.01f;  // LeakyReLU
  float norm_eps = 1e-5f;
  bool norm_affine = false;      // the bundle: affine-free instance norm
};

}  // namespace dex
