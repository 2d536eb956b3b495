// conv_transpose3d CPU kernels: Reference and Gemm against PyTorch fixtures (scripts/gen_fixtures_conv.py),
// both backwards against central finite differences, Gemm == Reference bit-exactly on small integers (both the
// kernel == stride GEMM+scatter path and the general path), Gemm vs Reference on the 5 DynUNet up-sampling
// shapes, and clear errors for bad parameters.
//
// Tolerances as in test_conv3d.cpp: reduction lengths R are fprop taps*C (at most; kernel == stride: C),
// dgrad taps*K, wgrad N*input voxels. rtol = 2u + sqrt(R)*u for Gemm (2u for the double-accumulating
// Reference), atol = rtol * rms(ref), NMSE ceiling rtol^2; the elementwise bound carries sqrt(2 ln n) for the
// worst of n elements.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bench/dynunet_shapes.h"
#include "kernels/conv_transpose3d.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::check_close;
using testing::kUnitF32;

const char* impl_name(CpuConvImpl impl) { return impl == CpuConvImpl::Reference ? "reference" : "gemm"; }

ConvTranspose3dParams params_from(const testing::FixtureTensor& t) {
  const auto& q = t.data;
  ConvTranspose3dParams p;
  p.N = int(q[0]), p.C = int(q[1]), p.K = int(q[2]), p.D = int(q[3]), p.H = int(q[4]), p.W = int(q[5]);
  p.KD = int(q[6]), p.KH = int(q[7]), p.KW = int(q[8]);
  for (int a = 0; a < 3; ++a) {
    p.stride[a] = int(q[9 + a]);
    p.pad[a] = int(q[12 + a]);
  }
  return p;
}

double rtol_for(CpuConvImpl impl, int64_t r) {
  return 2 * kUnitF32 + (impl == CpuConvImpl::Gemm ? std::sqrt(double(r)) * kUnitF32 : 0.0);
}

template <class R>
void expect_close_to(const std::string& what, const std::vector<float>& got, const R& ref, double rtol) {
  std::vector<double> r(ref.begin(), ref.end());
  ASSERT_EQ(got.size(), r.size()) << what;
  const double extreme = std::sqrt(2.0 * std::log(std::max<double>(2.0, double(r.size()))));
  const double rtol_elem = rtol * extreme;
  check_close(what, got.data(), r.data(), int64_t(r.size()), rtol_elem, rtol_elem * testing::rms(r), rtol * rtol);
}

const char* kFixtures[] = {"conv_transpose3d_k2s2", "conv_transpose3d_k221s221_batch2", "conv_transpose3d_k3s2p1",
                           "conv_transpose3d_k2s1"};

TEST(ConvTranspose3dCpu, conv_transpose3d_matches_pytorch_fixtures_fprop_dgrad_wgrad) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    auto fx = testing::load_fixture(testing::test_data(std::string("conv/") + name + ".bin"));
    const ConvTranspose3dParams p = params_from(fx.at("params"));
    const auto x = fx.at("x").f32(), w = fx.at("w").f32(), gy = fx.at("gy").f32();
    ASSERT_EQ(int64_t(x.size()), p.in_elems());
    ASSERT_EQ(int64_t(w.size()), p.weight_elems());
    ASSERT_EQ(int64_t(gy.size()), p.out_elems());
    const int64_t in_vox = int64_t(p.N) * p.D * p.H * p.W;
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm}) {
      const std::string tag = std::string(name) + " " + impl_name(impl);
      std::vector<float> y(p.out_elems()), dx(p.in_elems()), dw(p.weight_elems());
      conv_transpose3d_fprop_cpu(p, x.data(), w.data(), y.data(), impl);
      conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dx.data(), GradMode::Overwrite, impl);
      conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dw.data(), GradMode::Overwrite, impl);
      expect_close_to("conv_transpose3d fprop " + tag, y, fx.at("y").data, rtol_for(impl, p.taps() * p.C));
      expect_close_to("conv_transpose3d dgrad " + tag, dx, fx.at("dx").data, rtol_for(impl, p.taps() * p.K));
      expect_close_to("conv_transpose3d wgrad " + tag, dw, fx.at("dw").data, rtol_for(impl, in_vox));
    }
  }
}

std::vector<ConvTranspose3dParams> tiny_shapes() {
  std::vector<ConvTranspose3dParams> v;
  ConvTranspose3dParams a;  // k2 s2
  a.C = 3, a.K = 2, a.D = 2, a.H = 3, a.W = 2;
  v.push_back(a);
  ConvTranspose3dParams b = a;  // k(2,2,1) s(2,2,1), batch 2
  b.N = 2, b.KW = 1, b.stride[2] = 1, b.W = 3;
  v.push_back(b);
  ConvTranspose3dParams c;  // k3 s2 p1: overlapping taps, cropped output (the general path)
  c.C = 2, c.K = 3, c.D = 2, c.H = 3, c.W = 2, c.KD = c.KH = c.KW = 3;
  c.pad[0] = c.pad[1] = c.pad[2] = 1;
  v.push_back(c);
  return v;
}

TEST(ConvTranspose3dCpu, conv_transpose3d_dgrad_and_wgrad_match_finite_differences) {
  int idx = 0;
  for (const ConvTranspose3dParams& p : tiny_shapes()) {
    SCOPED_TRACE(str("tiny shape ", idx));
    std::vector<float> x = testing::random_vector(p.in_elems(), 41 + idx);
    std::vector<float> w = testing::random_vector(p.weight_elems(), 51 + idx);
    const std::vector<float> gy = testing::random_vector(p.out_elems(), 61 + idx);
    testing::grid_inputs(x);
    testing::grid_inputs(w);
    auto fwd_x = [&](const std::vector<float>& xx) {
      std::vector<float> y(p.out_elems());
      conv_transpose3d_fprop_cpu(p, xx.data(), w.data(), y.data(), CpuConvImpl::Reference);
      return std::vector<double>(y.begin(), y.end());
    };
    auto fwd_w = [&](const std::vector<float>& ww) {
      std::vector<float> y(p.out_elems());
      conv_transpose3d_fprop_cpu(p, x.data(), ww.data(), y.data(), CpuConvImpl::Reference);
      return std::vector<double>(y.begin(), y.end());
    };
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm}) {
      std::vector<float> dx(p.in_elems()), dw(p.weight_elems());
      conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dx.data(), GradMode::Overwrite, impl);
      conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dw.data(), GradMode::Overwrite, impl);
      std::cout << "conv_transpose3d dgrad " << impl_name(impl) << " tiny " << idx << "\n";
      EXPECT_GRADCHECK(testing::gradcheck(x, fwd_x, gy, dx, 1.0 / 16, rtol_for(CpuConvImpl::Gemm, p.taps() * p.K)));
      std::cout << "conv_transpose3d wgrad " << impl_name(impl) << " tiny " << idx << "\n";
      EXPECT_GRADCHECK(testing::gradcheck(w, fwd_w, gy, dw, 1.0 / 16,
                                          rtol_for(CpuConvImpl::Gemm, int64_t(p.N) * p.D * p.H * p.W)));
    }
    ++idx;
  }
}

void expect_bit_equal(const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int64_t bad = -1;
  for (size_t i = 0; i < a.size() && bad < 0; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) bad = int64_t(i);
  EXPECT_EQ(bad, -1) << what << ": first difference at " << bad << ": " << a[size_t(std::max<int64_t>(bad, 0))]
                     << " vs " << b[size_t(std::max<int64_t>(bad, 0))];
}

void exactness_pass(const std::string& what, const ConvTranspose3dParams& p, uint64_t seed) {
  const auto x = testing::random_ints(p.in_elems(), seed, -1, 1);
  const auto w = testing::random_ints(p.weight_elems(), seed + 1, -1, 1);
  const auto gy = testing::random_ints(p.out_elems(), seed + 2, -1, 1);
  const auto prior_dx = testing::random_ints(p.in_elems(), seed + 3, -2, 2);
  const auto prior_dw = testing::random_ints(p.weight_elems(), seed + 4, -2, 2);
  std::vector<float> y[2], dx[2], dw[2], dxa[2], dwa[2];
  const CpuConvImpl impls[2] = {CpuConvImpl::Reference, CpuConvImpl::Gemm};
  for (int i = 0; i < 2; ++i) {
    y[i].assign(p.out_elems(), NAN);  // fprop must write every output element
    dx[i].assign(p.in_elems(), NAN);
    dw[i].assign(p.weight_elems(), NAN);
    dxa[i] = prior_dx;
    dwa[i] = prior_dw;
    conv_transpose3d_fprop_cpu(p, x.data(), w.data(), y[i].data(), impls[i]);
    conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dx[i].data(), GradMode::Overwrite, impls[i]);
    conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dw[i].data(), GradMode::Overwrite, impls[i]);
    conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dxa[i].data(), GradMode::Accumulate, impls[i]);
    conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dwa[i].data(), GradMode::Accumulate, impls[i]);
  }
  expect_bit_equal(what + " fprop", y[1], y[0]);
  expect_bit_equal(what + " dgrad", dx[1], dx[0]);
  expect_bit_equal(what + " wgrad", dw[1], dw[0]);
  expect_bit_equal(what + " dgrad accumulate", dxa[1], dxa[0]);
  expect_bit_equal(what + " wgrad accumulate", dwa[1], dwa[0]);
  for (size_t i = 0; i < dxa[0].size(); ++i)
    ASSERT_EQ(dxa[0][i], prior_dx[i] + dx[0][i]) << what << " dgrad accumulate at " << i;
  for (size_t i = 0; i < dwa[0].size(); ++i)
    ASSERT_EQ(dwa[0][i], prior_dw[i] + dw[0][i]) << what << " wgrad accumulate at " << i;
}

TEST(ConvTranspose3dCpu, conv_transpose3d_gemm_equals_reference_exactly_on_small_integers) {
  int idx = 0;
  for (const ConvTranspose3dParams& p : tiny_shapes()) {
    exactness_pass(str("tiny ", idx), p, 800 + idx);
    ++idx;
  }
  ConvTranspose3dParams odd;  // k2s2 on odd extents, batch 2
  odd.N = 2, odd.C = 5, odd.K = 3, odd.D = 3, odd.H = 5, odd.W = 7;
  exactness_pass("k2s2 odd 3x5x7", odd, 900);
}

// kernel == stride path with more input voxels than one panel chunk (K = 1, 8 taps: 32-byte panel rows).
TEST(ConvTranspose3dCpu, conv_transpose3d_gemm_equals_reference_across_panel_chunks) {
  ConvTranspose3dParams p;
  p.C = 1, p.K = 1, p.D = p.H = p.W = 33;  // 35,937 input voxels > 1 MiB / 32 B = 32,768 rows per chunk
  exactness_pass("multi-chunk k2s2", p, 1000);
}

// The 5 transposed layers of the DynUNet, real channels, extents from a 32 patch clamped to at most 5.
TEST(ConvTranspose3dCpu, conv_transpose3d_gemm_matches_reference_on_every_dynunet_layer) {
  int count = 0;
  for (const ConvLayerShape& full : dynunet_conv_shapes(32)) {
    if (!full.transposed) continue;
    const ConvLayerShape s = clamp_extent(full, 5);
    const ConvTranspose3dParams& p = s.convt;
    const std::string tag = s.name + " (" + s.describe() + ")";
    SCOPED_TRACE(tag);
    const auto x = testing::random_vector(p.in_elems(), 1100 + count);
    const auto w = testing::random_vector(p.weight_elems(), 1200 + count);
    const auto gy = testing::random_vector(p.out_elems(), 1300 + count);
    std::vector<float> yr(p.out_elems()), yg(p.out_elems()), dxr(p.in_elems()), dxg(p.in_elems()),
        dwr(p.weight_elems()), dwg(p.weight_elems());
    conv_transpose3d_fprop_cpu(p, x.data(), w.data(), yr.data(), CpuConvImpl::Reference);
    conv_transpose3d_fprop_cpu(p, x.data(), w.data(), yg.data(), CpuConvImpl::Gemm);
    conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dxr.data(), GradMode::Overwrite, CpuConvImpl::Reference);
    conv_transpose3d_dgrad_cpu(p, gy.data(), w.data(), dxg.data(), GradMode::Overwrite, CpuConvImpl::Gemm);
    conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dwr.data(), GradMode::Overwrite, CpuConvImpl::Reference);
    conv_transpose3d_wgrad_cpu(p, x.data(), gy.data(), dwg.data(), GradMode::Overwrite, CpuConvImpl::Gemm);
    const int64_t in_vox = int64_t(p.N) * p.D * p.H * p.W;
    expect_close_to("conv_transpose3d fprop gemm vs reference " + tag, yg, yr, rtol_for(CpuConvImpl::Gemm, p.C));
    expect_close_to("conv_transpose3d dgrad gemm vs reference " + tag, dxg, dxr,
                    rtol_for(CpuConvImpl::Gemm, p.taps() * p.K));
    expect_close_to("conv_transpose3d wgrad gemm vs reference " + tag, dwg, dwr, rtol_for(CpuConvImpl::Gemm, in_vox));
    ++count;
  }
  EXPECT_EQ(count, 5);
}

TEST(ConvTranspose3dCpu, conv_transpose3d_rejects_bad_params_with_clear_errors) {
  ConvTranspose3dParams ok;
  ok.C = 2, ok.K = 2, ok.D = ok.H = ok.W = 3;
  EXPECT_NO_THROW(ok.validate());
  std::vector<float> buf(4096);
  auto expect_error = [&](ConvTranspose3dParams p, const std::string& needle) {
    try {
      conv_transpose3d_fprop_cpu(p, buf.data(), buf.data(), buf.data());
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ConvTranspose3dParams p = ok;
  p.stride[2] = 0;
  expect_error(p, "stride[2]");
  p = ok;
  p.K = -1;
  expect_error(p, "K=-1");
  p = ok;
  p.D = 1, p.KD = 2, p.pad[0] = 1;  // (1-1)*2 - 2 + 2 = 0 output planes
  expect_error(p, "output extent");
  EXPECT_THROW(conv_transpose3d_wgrad_cpu(ok, buf.data(), nullptr, buf.data()), Error);
}

}  // namespace
}  // namespace dex
