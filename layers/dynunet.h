// MONAI DynUNet as the bundle configures it (spec §2): residual blocks down, UnetUpBlocks up, 1x1 head with
// bias, no deep supervision. Depth, filters, kernels and strides come from DynUNetConfig so tests can build
// tiny networks; the default config is the bundle's (31,001,282 parameters).
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/tape.h"
#include "layers/block_options.h"
#include "layers/conv3d.h"
#include "layers/parameters.h"
#include "layers/res_block.h"
#include "layers/up_block.h"

namespace dex {

struct DynUNetConfig {
  int in_channels = 3;
  int out_channels = 2;
  std::vector<Int3> kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  std::vector<Int3> strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  std::vector<Int3> upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  std::vector<int> filters = {32, 64, 128, 256, 320, 320};
  BlockOptions block;

  int levels() const { return static_cast<int>(strides.size()); }
  // Throws InputError naming the inconsistent field.
  void validate() const;
  // Product of the strides per axis: every input extent must be a multiple of it.
  Int3 total_stride() const;
};

class DynUNet {
 public:
  explicit DynUNet(const DynUNetConfig& config = DynUNetConfig(), Device device = Device::CPU);
  DynUNet(const DynUNet&) = delete;
  DynUNet& operator=(const DynUNet&) = delete;

  // x: NDHWC [N][D][H][W][in_channels] -> logits [N][D][H][W][out_channels].
  Tensor forward(Tape& tape, const Tensor& x) const;

  const DynUNetConfig& config() const { return m_config; }
  ParameterSet& parameters() { return m_params; }
  const ParameterSet& parameters() const { return m_params; }
  int64_t num_parameters() const { return m_params.numel(); }
  Device device() const { return m_params.device(); }

  // Kaiming-normal init (spec §2) from dex::Rng with RngStream::Init.
  void init(uint64_t seed);
  StateDict state_dict() const { return m_params.state_dict(); }
  void load_state_dict(const StateDict& sd) { m_params.load_state_dict(sd); }

 private:
  DynUNetConfig m_config;
  ParameterSet m_params;
  ResBlock m_input_block;
  std::vector<ResBlock> m_downsamples;
  ResBlock m_bottleneck;
  std::vector<UpBlock> m_upsamples;  // upsamples[0] is the DEEPEST
  Conv3d m_output_block;
};

}  // namespace dex
