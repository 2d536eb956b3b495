#include "layers/dynunet.h"

#include "layers/init.h"

namespace dex {

void DynUNetConfig::validate() const {
  const int L = levels();
  DEX_INPUT_CHECK(L >= 2, "DynUNet: strides must have at least 2 entries, got ", L);
  DEX_INPUT_CHECK(static_cast<int>(kernel_sizes.size()) == L, "DynUNet: kernel_sizes has ", kernel_sizes.size(),
                  " entries, strides has ", L);
  DEX_INPUT_CHECK(static_cast<int>(upsample_kernel_sizes.size()) == L - 1, "DynUNet: upsample_kernel_sizes has ",
                  upsample_kernel_sizes.size(), " entries, expected len(strides) - 1 = ", L - 1);
  DEX_INPUT_CHECK(static_cast<int>(filters.size()) == L, "DynUNet: filters has ", filters.size(),
                  " entries, expected len(strides) = ", L);
  DEX_INPUT_CHECK(in_channels > 0 && out_channels > 0, "DynUNet: in_channels ", in_channels, " and out_channels ",
                  out_channels, " must be positive");
  for (int f : filters) DEX_INPUT_CHECK(f > 0, "DynUNet: filter count ", f, " must be positive");
  for (int i = 0; i < L; ++i)
    for (int a = 0; a < 3; ++a) {
      DEX_INPUT_CHECK(strides[i][a] >= 1 && kernel_sizes[i][a] >= 1 && kernel_sizes[i][a] >= strides[i][a] - 1,
                      "DynUNet: level ", i, " axis ", a, ": kernel ", kernel_sizes[i][a], " / stride ", strides[i][a],
                      " is not valid");
      if (i > 0)
        DEX_INPUT_CHECK(upsample_kernel_sizes[i - 1][a] == strides[i][a], "DynUNet: upsample_kernel_sizes[", i - 1,
                        "] must equal strides[", i, "] (exact inverse of the downsampling), got ",
                        upsample_kernel_sizes[i - 1][a], " vs ", strides[i][a]);
    }
}

Int3 DynUNetConfig::total_stride() const {
  Int3 t{1, 1, 1};
  for (const Int3& s : strides)
    for (int a = 0; a < 3; ++a) t[a] *= s[a];
  return t;
}

DynUNet::DynUNet(const DynUNetConfig& config, Device device) : m_config(config) {
  config.validate();
  const auto& f = config.filters;
  const auto& k = config.kernel_sizes;
  const auto& s = config.strides;
  const int L = config.levels();
  const BlockOptions& opt = config.block;
  // Module order of MONAI's DynUNet: input_block, downsamples, bottleneck, output_block, upsamples.
  m_input_block = ResBlock(m_params, "input_block", config.in_channels, f[0], k[0], s[0], opt);
  for (int i = 0; i < L - 2; ++i)
    m_downsamples.emplace_back(m_params, "downsamples." + std::to_string(i), f[i], f[i + 1], k[i + 1], s[i + 1], opt);
  m_bottleneck = ResBlock(m_params, "bottleneck", f[L - 2], f[L - 1], k[L - 1], s[L - 1], opt);
  m_output_block = Conv3d(m_params, "output_block.conv.conv", f[0], config.out_channels, {1, 1, 1}, {1, 1, 1}, true);
  // upsamples.j: filters[L-1-j] -> filters[L-2-j], kernel k[L-1-j], upsampling by strides[L-1-j].
  for (int j = 0; j < L - 1; ++j)
    m_upsamples.emplace_back(m_params, "upsamples." + std::to_string(j), f[L - 1 - j], f[L - 2 - j], k[L - 1 - j],
                             config.upsample_kernel_sizes[L - 2 - j], opt);
  m_params.allocate(device);
}

Tensor DynUNet::forward(Tape& tape, const Tensor& x) const {
  const DynUNetConfig& c = m_config;
  const Int3 t = c.total_stride();
  DEX_INPUT_CHECK(x.ndim == 5 && x.layout == Layout::NDHWC, "DynUNet: input must be NDHWC, got ", x.shape_str());
  DEX_INPUT_CHECK(x.C() == c.in_channels, "DynUNet: input has ", x.C(), " channels, the network expects ",
                  c.in_channels);
  DEX_INPUT_CHECK(x.D() % t[0] == 0 && x.H() % t[1] == 0 && x.W() % t[2] == 0, "DynUNet: input spatial size ",
                  x.D(), "x", x.H(), "x", x.W(), " must be a multiple of the total stride ", t[0], "x", t[1], "x",
                  t[2]);
  DEX_INPUT_CHECK(x.device == device(), "DynUNet: input on ", device_name(x.device), ", parameters on ",
                  device_name(device()));
  std::vector<Tensor> skips;
  skips.push_back(m_input_block.forward(tape, x));
  for (const ResBlock& d : m_downsamples) skips.push_back(d.forward(tape, skips.back()));
  Tensor h = m_bottleneck.forward(tape, skips.back());
  for (size_t j = 0; j < m_upsamples.size(); ++j) h = m_upsamples[j].forward(tape, h, skips[skips.size() - 1 - j]);
  return m_output_block.forward(tape, h);
}

void DynUNet::init(uint64_t seed) { kaiming_normal_init(m_params, seed); }

}  // namespace dex
