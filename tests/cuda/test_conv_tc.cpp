// Tensor-core (v2, mma.sync) convolution backward passes in the backend-op table (tests/cuda/backend_op_table.h):
// conv3d wgrad v2 (split-voxel GEMM, ordered reduction), conv3d dgrad v2 at strides 1, 2 and (2,2,1) and for 1x1x1
// (one GEMM per output parity class; Overwrite rows check the classes without taps write their zeros), and the
// transposed conv (kernel == stride) dgrad / wgrad, v1 (16-bit direct, the oracle) and v2. Every row: guard bands,
// NaN poison, small-integer exactness (bit-equal), random inputs with derived tolerances, determinism (two runs
// bitwise equal), against the CPU reference. V2MatchesV1 compares v2 with v1 on the GPU at sizes the CPU reference
// would make slow. Without a GPU the rows skip and say why; the supports / workspace checks run everywhere.
//
// Tolerances (STYLE.md §2): 16-bit products are exact in fp32, so only the fp32 summation order differs:
// wgrad (fp32 dW) rtol = tol(F32, voxels), dgrad (16-bit dx) rtol = tol(dtype, taps x K) as in test_backend_ops.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops_cuda.h"
#include "tests/cuda/backend_op_table.h"

namespace dex {
namespace {

using namespace op_table;

Conv3dParams conv(int N, int C, int K, int D, int H, int W, int k, int s0, int s1, int s2) {
  Conv3dParams p;
  p.N = N; p.C = C; p.K = K; p.D = D; p.H = H; p.W = W;
  p.KD = p.KH = p.KW = k;
  p.stride[0] = s0; p.stride[1] = s1; p.stride[2] = s2;
  p.pad[0] = p.pad[1] = p.pad[2] = (k - 1) / 2;
  return p;
}
std::string conv_name(const Conv3dParams& p) {
  return str("N", p.N, "C", p.C, "K", p.K, "D", p.D, "H", p.H, "W", p.W, "k", p.KD, "s", p.stride[0], p.stride[1],
             p.stride[2]);
}
ConvTranspose3dParams convt(int N, int C, int K, int D, int H, int W, int k2) {
  ConvTranspose3dParams p;
  p.N = N; p.C = C; p.K = K; p.D = D; p.H = H; p.W = W;
  p.KD = p.KH = 2; p.KW = k2;
  p.stride[0] = p.stride[1] = 2; p.stride[2] = k2;
  return p;
}
std::string convt_name(const ConvTranspose3dParams& p) {
  return str("N", p.N, "C", p.C, "K", p.K, "D", p.D, "H", p.H, "W", p.W, "k22", p.KW);
}
const char* mode_name(GradMode m) { return m == GradMode::Overwrite ? "over" : "acc"; }

// The caller owns the workspace (STYLE.md §4): allocated per call here, through the backend's allocator, filled
// with 0xFF bytes (NaN in every float / half) so a partial or repacked weight the op reads before writing shows up as
// NaN in the output, and surrounded by guard bands that must be untouched when the op is done (~Ws checks them).
struct Ws {
  static constexpr size_t kGuard = 256;
  Buffer buf;
  size_t bytes;
  Ws(const Backend& b, size_t n) : buf(*b.allocator, n + 2 * kGuard), bytes(n) {
    DEX_CUDA_CHECK(cudaMemset(buf.data(), 0xFF, n + 2 * kGuard));
  }
  void* get(size_t n) const { return n ? static_cast<uint8_t*>(buf.data()) + kGuard : nullptr; }
  ~Ws() {
    std::vector<uint8_t> h(bytes + 2 * kGuard);
    if (cudaMemcpy(h.data(), buf.data(), h.size(), cudaMemcpyDeviceToHost) != cudaSuccess) {
      ADD_FAILURE() << "workspace copy-back failed";
      return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < kGuard; ++i) bad += (h[i] != 0xFF) + (h[kGuard + bytes + i] != 0xFF);
    EXPECT_EQ(bad, 0u) << "workspace guard bands overwritten (" << bytes << " bytes asked for)";
  }
};

// A conv3d wgrad row on integer data (x in {0,1}, dy in {-1,0,1}): through variant `v` with the workspace
// conv3d_wgrad_cuda_workspace_bytes asks for, exact against the reference.
OpCase wgrad_row(const Conv3dParams& p, DType t, GradMode mode, ConvVariant v, const char* label, uint64_t seed) {
  const int64_t xin = p.in_elems(), win = p.weight_elems(), yout = p.out_elems();
  return {str("conv3d_wgrad/", dt(t), "/", label, "/", mode_name(mode), "/", conv_name(p)),
          {{t, xin, -1, 1, 0, 1}, {t, yout}}, {{DType::F32, win, mode == GradMode::Accumulate}},
          [p, mode](const HostIn& in, HostIn& out) {
            conv3d_wgrad_cpu(p, in[0].data(), in[1].data(), out[0].data(), mode, CpuConvImpl::Reference);
            return Scalars{};
          },
          [p, t, mode, v](const Backend& b, const std::vector<const void*>& in, const std::vector<void*>& out,
                          void* s) {
            const size_t wsb = conv3d_wgrad_cuda_workspace_bytes(p, t);
            Ws ws(b, wsb);
            conv3d_wgrad_cuda(p, t, in[0], in[1], static_cast<float*>(out[0]), mode, v, ws.get(wsb), S(s));
            b.synchronize(s);
            return Scalars{};
          },
          tol(DType::F32, double(p.out_voxels()) + 1), 1e-10, true, 0, seed};
}

void add_conv_rows(std::vector<OpCase>& rows, const Conv3dParams& p, uint64_t seed) {
  const int64_t xin = p.in_elems(), win = p.weight_elems(), yout = p.out_elems();
  const double kd = double(p.taps()) * p.K;
  for (DType t : {DType::F16, DType::BF16}) {
    const bool exact_d = kd <= (t == DType::F16 ? 2048 : 256);
    for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
      const bool acc = mode == GradMode::Accumulate;
      // wgrad v2: x in {0,1}, dy in {-1,0,1}: |sums| <= voxels, exact in fp32 (and the double split sum).
      if (conv3d_wgrad_cuda_supports(p, t, ConvVariant::Mma))
        rows.push_back(wgrad_row(p, t, mode, ConvVariant::Mma, "v2", seed + (acc ? 1 : 0)));
    }
    // dgrad v2, Overwrite (test_backend_ops.cpp has the Accumulate rows): every dx voxel must be written, also
    // those of parity classes no tap reaches (1x1x1 stride 2).
    if (conv3d_dgrad_cuda_supports(p, t, ConvVariant::Mma))
      rows.push_back({str("conv3d_dgrad/", dt(t), "/v2/over/", conv_name(p)), {{t, yout, -1, 1, 0, 1}, {t, win}},
                      {{t, xin}},
                      [p](const HostIn& in, HostIn& out) {
                        conv3d_dgrad_cpu(p, in[0].data(), in[1].data(), out[0].data(), GradMode::Overwrite,
                                         CpuConvImpl::Reference);
                        return Scalars{};
                      },
                      [p, t](const Backend& b, const std::vector<const void*>& in, const std::vector<void*>& out,
                             void* s) {
                        const size_t wsb = conv3d_dgrad_cuda_workspace_bytes(p, t);
                        Ws ws(b, wsb);
                        conv3d_dgrad_cuda(p, t, in[0], in[1], out[0], GradMode::Overwrite, ConvVariant::Mma,
                                          ws.get(wsb), S(s));
                        b.synchronize(s);
                        return Scalars{};
                      },
                      tol(t, kd), t == DType::F16 ? 1e-6 : 3e-5, exact_d, 0, seed + 2});
  }
}

// wgrad v1s (Best with its workspace where v2 cannot go: C = 3, K = 2): integer data, so every partial and the
// double reduction of the splits are exact: equal to the reference bit for bit.
void add_small_wgrad_rows(std::vector<OpCase>& rows, const Conv3dParams& p, uint64_t seed) {
  for (DType t : {DType::F16, DType::BF16}) {
    EXPECT_GE(conv3d_wgrad_cuda_workspace_bytes(p, t), size_t(p.weight_elems()) * 4) << "v1s needs a workspace here";
    for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate})
      rows.push_back(wgrad_row(p, t, mode, ConvVariant::Best, "v1s", seed + (mode == GradMode::Accumulate ? 1 : 0)));
  }
}

void add_convt_rows(std::vector<OpCase>& rows, const ConvTranspose3dParams& p, uint64_t seed) {
  const int64_t xin = p.in_elems(), win = p.weight_elems(), yout = p.out_elems();
  const double kd = double(p.K) * p.taps(), kw = double(p.N) * p.D * p.H * p.W;
  for (DType t : {DType::F16, DType::BF16})
    for (ConvVariant v : {ConvVariant::Direct, ConvVariant::Mma})
      for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
        const bool acc = mode == GradMode::Accumulate;
        const std::string tail = str(dt(t), "/", conv_variant_name(v), "/", mode_name(mode), "/", convt_name(p));
        const bool exact_d = kd + acc <= (t == DType::F16 ? 2048 : 256);
        if (conv_transpose3d_dgrad_cuda_supports(p, t, v))
          rows.push_back({"conv_transpose3d_dgrad/" + tail, {{t, yout, -1, 1, 0, 1}, {t, win}}, {{t, xin, acc}},
                          [p, mode](const HostIn& in, HostIn& out) {
                            conv_transpose3d_dgrad_cpu(p, in[0].data(), in[1].data(), out[0].data(), mode,
                                                       CpuConvImpl::Reference);
                            return Scalars{};
                          },
                          [p, t, v, mode](const Backend& b, const std::vector<const void*>& in,
                                          const std::vector<void*>& out, void* s) {
                            const size_t wsb = conv_transpose3d_dgrad_cuda_workspace_bytes(p, t);
                            Ws ws(b, wsb);
                            conv_transpose3d_dgrad_cuda(p, t, in[0], in[1], out[0], mode, v,
                                                        v == ConvVariant::Mma ? ws.get(wsb) : nullptr, S(s));
                            b.synchronize(s);
                            return Scalars{};
                          },
                          tol(t, kd + acc), t == DType::F16 ? 1e-6 : 3e-5, exact_d, 0, seed + (acc ? 1 : 0)});
        if (conv_transpose3d_wgrad_cuda_supports(p, t, v))
          rows.push_back({"conv_transpose3d_wgrad/" + tail, {{t, xin, -1, 1, 0, 1}, {t, yout}},
                          {{DType::F32, win, acc}},
                          [p, mode](const HostIn& in, HostIn& out) {
                            conv_transpose3d_wgrad_cpu(p, in[0].data(), in[1].data(), out[0].data(), mode,
                                                       CpuConvImpl::Reference);
                            return Scalars{};
                          },
                          [p, t, v, mode](const Backend& b, const std::vector<const void*>& in,
                                          const std::vector<void*>& out, void* s) {
                            const size_t wsb = conv_transpose3d_wgrad_cuda_workspace_bytes(p, t);
                            Ws ws(b, wsb);
                            conv_transpose3d_wgrad_cuda(p, t, in[0], in[1], static_cast<float*>(out[0]), mode, v,
                                                        v == ConvVariant::Mma ? ws.get(wsb) : nullptr, S(s));
                            b.synchronize(s);
                            return Scalars{};
                          },
                          tol(DType::F32, kw + 1), 1e-10, true, 0, seed + 2 + (acc ? 1 : 0)});
      }
}

std::vector<OpCase> all_rows() {
  std::vector<OpCase> rows;
  // Stride 1 / 2 / (2,2,1), 1x1x1 stride 1 / 2, odd extents, ragged GEMM rows (taps x C = 864 = 6.75 x 128), K = 32
  // and 64 tiles, several voxel splits with a ragged last k-step (17 x 15 x 16 = 4080 voxels), a batch of 2.
  add_conv_rows(rows, conv(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), 300);
  add_conv_rows(rows, conv(1, 64, 64, 9, 7, 6, 3, 2, 2, 2), 310);
  add_conv_rows(rows, conv(2, 32, 64, 8, 8, 6, 3, 2, 2, 1), 320);
  add_conv_rows(rows, conv(1, 32, 32, 7, 6, 5, 1, 1, 1, 1), 330);
  add_conv_rows(rows, conv(1, 32, 64, 8, 6, 7, 1, 2, 2, 2), 340);
  add_conv_rows(rows, conv(1, 64, 32, 5, 5, 5, 3, 2, 2, 2), 350);   // odd extent: classes of unequal size
  add_conv_rows(rows, conv(1, 32, 32, 17, 15, 16, 3, 1, 1, 1), 360);  // 16 splits, last one 240 voxels
  add_small_wgrad_rows(rows, conv(1, 3, 32, 9, 8, 7, 3, 1, 1, 1), 370);    // input_block.conv1
  add_small_wgrad_rows(rows, conv(2, 3, 32, 20, 18, 17, 1, 1, 1, 1), 372);  // input_block.conv3, 3 splits, N = 2
  add_small_wgrad_rows(rows, conv(1, 32, 2, 24, 20, 19, 1, 1, 1, 1), 374);  // output_block.conv, 3 splits
  add_small_wgrad_rows(rows, conv(1, 3, 8, 11, 9, 10, 3, 2, 2, 1), 376);    // strides, 3 x 27 x 8 weights
  add_convt_rows(rows, convt(1, 64, 32, 5, 3, 7, 2), 400);
  add_convt_rows(rows, convt(2, 32, 32, 3, 4, 5, 1), 410);
  add_convt_rows(rows, convt(1, 32, 64, 4, 4, 4, 2), 420);
  return rows;
}

const std::vector<OpCase>& table() {
  static const std::vector<OpCase> rows = all_rows();
  return rows;
}

class ConvTc : public ::testing::TestWithParam<size_t> {};

TEST_P(ConvTc, MatchesCpuReference) {
  run_cuda_row(table()[GetParam()]);
}

INSTANTIATE_TEST_SUITE_P(Table, ConvTc, ::testing::Range<size_t>(0, table().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return param_name(table()[info.param].name); });

// ---- v2 against v1 on the GPU at mid-size shapes (random f16 data, device-side, no CPU reference) ----------------
std::vector<uint16_t> random_f16(int64_t n, uint64_t seed) {
  const auto v = testing::random_vector(n, seed, -1.f, 1.f);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_f16_bits(v[i]);
  return h;
}
template <class T>
DeviceBuffer<T> upload(const std::vector<T>& h) {
  DeviceBuffer<T> d(h.size());
  DEX_CUDA_CHECK(cudaMemcpy(d.data(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <class T>
std::vector<T> download(const DeviceBuffer<T>& d) {
  std::vector<T> h(d.size());
  DEX_CUDA_CHECK(cudaMemcpy(h.data(), d.data(), h.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
std::vector<float> widen(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = f16_bits_to_f32(h[i]);
  return v;
}
// v1 and v2 both accumulate in fp32 in different orders: each is within tol of the exact sum, so they are within
// 2 tol of each other (elementwise, plus the atol term on the rms).
void expect_close(const std::vector<float>& v2, const std::vector<float>& v1, double rtol, const std::string& what) {
  std::vector<double> ref(v1.begin(), v1.end());
  const auto cmp = testing::compare(v2.data(), v1.data(), int64_t(v1.size()), 2 * rtol, 2 * rtol * testing::rms(ref), 1e-6);
  EXPECT_TRUE(cmp.ok) << what << ": " << cmp.message;
}

TEST(ConvTcV2MatchesV1, MidSizeDynUNetShapes) {
  std::string why;
  if (cuda_device_count(&why) == 0) GTEST_SKIP() << "no CUDA device: " << why;
  for (const Conv3dParams& p : {conv(1, 32, 32, 24, 24, 24, 3, 1, 1, 1), conv(1, 32, 64, 24, 24, 24, 3, 2, 2, 2),
                                conv(1, 64, 64, 12, 12, 10, 3, 2, 2, 1), conv(1, 32, 64, 24, 24, 24, 1, 2, 2, 2)}) {
    SCOPED_TRACE(conv_name(p));
    const auto x = upload(random_f16(p.in_elems(), 1)), w = upload(random_f16(p.weight_elems(), 2)),
               dy = upload(random_f16(p.out_elems(), 3));
    DeviceBuffer<uint16_t> dx1(size_t(p.in_elems())), dx2(size_t(p.in_elems()));
    DeviceBuffer<float> dw1(size_t(p.weight_elems())), dw2(size_t(p.weight_elems()));
    DeviceBuffer<uint8_t> wsd(std::max<size_t>(conv3d_dgrad_cuda_workspace_bytes(p, DType::F16), 1));
    DeviceBuffer<uint8_t> wsw(std::max<size_t>(conv3d_wgrad_cuda_workspace_bytes(p, DType::F16), 1));
    conv3d_dgrad_cuda(p, DType::F16, dy.data(), w.data(), dx1.data(), GradMode::Overwrite, ConvVariant::Direct);
    conv3d_dgrad_cuda(p, DType::F16, dy.data(), w.data(), dx2.data(), GradMode::Overwrite, ConvVariant::Mma, wsd.data());
    conv3d_wgrad_cuda(p, DType::F16, x.data(), dy.data(), dw1.data(), GradMode::Overwrite, ConvVariant::Direct);
    conv3d_wgrad_cuda(p, DType::F16, x.data(), dy.data(), dw2.data(), GradMode::Overwrite, ConvVariant::Mma, wsw.data());
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
    expect_close(widen(download(dx2)), widen(download(dx1)), tol(DType::F16, double(p.taps()) * p.K), "dgrad");
    expect_close(download(dw2), download(dw1), tol(DType::F32, double(p.out_voxels())), "wgrad");
  }
  for (const ConvTranspose3dParams& p : {convt(1, 64, 32, 12, 12, 12, 2), convt(1, 64, 64, 8, 8, 6, 1)}) {
    SCOPED_TRACE(convt_name(p));
    const auto x = upload(random_f16(p.in_elems(), 4)), w = upload(random_f16(p.weight_elems(), 5)),
               dy = upload(random_f16(p.out_elems(), 6));
    DeviceBuffer<uint16_t> dx1(size_t(p.in_elems())), dx2(size_t(p.in_elems()));
    DeviceBuffer<float> dw1(size_t(p.weight_elems())), dw2(size_t(p.weight_elems()));
    DeviceBuffer<uint8_t> wsd(std::max<size_t>(conv_transpose3d_dgrad_cuda_workspace_bytes(p, DType::F16), 1));
    DeviceBuffer<uint8_t> wsw(std::max<size_t>(conv_transpose3d_wgrad_cuda_workspace_bytes(p, DType::F16), 1));
    conv_transpose3d_dgrad_cuda(p, DType::F16, dy.data(), w.data(), dx1.data(), GradMode::Overwrite, ConvVariant::Direct);
    conv_transpose3d_dgrad_cuda(p, DType::F16, dy.data(), w.data(), dx2.data(), GradMode::Overwrite, ConvVariant::Mma,
                                wsd.data());
    conv_transpose3d_wgrad_cuda(p, DType::F16, x.data(), dy.data(), dw1.data(), GradMode::Overwrite, ConvVariant::Direct);
    conv_transpose3d_wgrad_cuda(p, DType::F16, x.data(), dy.data(), dw2.data(), GradMode::Overwrite, ConvVariant::Mma,
                                wsw.data());
    DEX_CUDA_CHECK(cudaDeviceSynchronize());
    expect_close(widen(download(dx2)), widen(download(dx1)), tol(DType::F16, double(p.K) * p.taps()), "dgrad");
    expect_close(download(dw2), download(dw1), tol(DType::F32, double(p.in_elems() / p.C)), "wgrad");
  }
}

// ---- capability checks and workspace contract: no GPU needed ---------------------------------------------------
TEST(ConvTcSupports, EveryDynUNetBackwardShapeHasAV2Path) {
  struct L { int C, K, k, s0, s1, s2; };
  const L layers[] = {{32, 32, 3, 1, 1, 1},   {32, 64, 3, 2, 2, 2},  {64, 64, 3, 1, 1, 1}, {32, 64, 1, 2, 2, 2},
                      {256, 320, 3, 2, 2, 2}, {320, 320, 3, 2, 2, 1}, {640, 320, 3, 1, 1, 1}, {64, 32, 3, 1, 1, 1},
                      {320, 320, 1, 2, 2, 1}};
  for (const L& l : layers) {
    const Conv3dParams p = conv(1, l.C, l.K, 16, 16, 16, l.k, l.s0, l.s1, l.s2);
    std::string why;
    for (DType t : {DType::F16, DType::BF16}) {
      EXPECT_TRUE(conv3d_dgrad_cuda_supports(p, t, ConvVariant::Mma, &why)) << conv_name(p) << ": " << why;
      EXPECT_TRUE(conv3d_wgrad_cuda_supports(p, t, ConvVariant::Mma, &why)) << conv_name(p) << ": " << why;
      EXPECT_EQ(conv3d_dgrad_cuda_workspace_bytes(p, t), size_t(p.weight_elems()) * 2);
      EXPECT_GE(conv3d_wgrad_cuda_workspace_bytes(p, t), size_t(p.weight_elems()) * 4);  // at least one split
    }
  }
  for (const ConvTranspose3dParams& p : {convt(1, 320, 320, 4, 4, 4, 1), convt(1, 64, 32, 64, 64, 64, 2)}) {
    std::string why;
    EXPECT_TRUE(conv_transpose3d_dgrad_cuda_supports(p, DType::F16, ConvVariant::Mma, &why)) << why;
    EXPECT_TRUE(conv_transpose3d_wgrad_cuda_supports(p, DType::F16, ConvVariant::Mma, &why)) << why;
  }
}

TEST(ConvTcSupports, UnsupportedCasesSayWhy) {
  std::string why;
  EXPECT_FALSE(conv3d_wgrad_cuda_supports(conv(1, 3, 32, 8, 8, 8, 3, 1, 1, 1), DType::F16, ConvVariant::Mma, &why));
  EXPECT_NE(why.find("C % 32"), std::string::npos) << why;
  EXPECT_FALSE(conv3d_wgrad_cuda_supports(conv(1, 32, 32, 8, 8, 8, 3, 1, 1, 1), DType::F32, ConvVariant::Mma, &why));
  EXPECT_NE(why.find("f16 or bf16"), std::string::npos) << why;
  // C = 3: no v2, but v1s (split voxels, small weights) needs one fp32 partial per weight per split (1 split here).
  EXPECT_EQ(conv3d_wgrad_cuda_workspace_bytes(conv(1, 3, 32, 8, 8, 8, 3, 1, 1, 1), DType::F16), 3u * 32 * 27 * 4);
  // Weights too large for v1s and no v2 (C = 40): no workspace, v1.
  EXPECT_EQ(conv3d_wgrad_cuda_workspace_bytes(conv(1, 40, 40, 8, 8, 8, 3, 1, 1, 1), DType::F16), 0u);
  Conv3dParams s3 = conv(1, 32, 32, 9, 9, 9, 3, 3, 3, 3);
  EXPECT_FALSE(conv3d_dgrad_cuda_supports(s3, DType::F16, ConvVariant::Mma, &why));
  EXPECT_NE(why.find("stride 1 or 2"), std::string::npos) << why;
  EXPECT_TRUE(conv3d_dgrad_cuda_supports(s3, DType::F16, ConvVariant::Direct, &why));  // v1 takes it
  ConvTranspose3dParams odd = convt(1, 32, 16, 4, 4, 4, 2);
  EXPECT_TRUE(conv_transpose3d_fprop_cuda_supports(odd, DType::F16, ConvVariant::Mma, &why)) << why;  // K x taps = 128
  EXPECT_FALSE(conv_transpose3d_wgrad_cuda_supports(odd, DType::F16, ConvVariant::Mma, &why));
  EXPECT_NE(why.find("K % 32"), std::string::npos) << why;
  EXPECT_EQ(conv_transpose3d_dgrad_cuda_workspace_bytes(odd, DType::F16), 0u);
}

// Asking for v2 without the workspace it needs is an error that names the size (thrown before any launch).
TEST(ConvTcSupports, V2WithoutWorkspaceThrows) {
  const Conv3dParams p = conv(1, 32, 32, 8, 8, 8, 3, 1, 1, 1);
  const size_t wsb = conv3d_wgrad_cuda_workspace_bytes(p, DType::F16);
  try {
    conv3d_wgrad_cuda(p, DType::F16, nullptr, nullptr, nullptr, GradMode::Overwrite, ConvVariant::Mma, nullptr, nullptr);
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(wsb)), std::string::npos) << e.what();
  }
  const ConvTranspose3dParams q = convt(1, 64, 32, 4, 4, 4, 2);
  EXPECT_THROW(conv_transpose3d_wgrad_cuda(q, DType::F16, nullptr, nullptr, nullptr, GradMode::Overwrite,
                                           ConvVariant::Mma, nullptr, nullptr),
               Error);
  EXPECT_THROW(conv_transpose3d_dgrad_cuda(q, DType::F16, nullptr, nullptr, nullptr, GradMode::Overwrite,
                                           ConvVariant::Mma, nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace dex
