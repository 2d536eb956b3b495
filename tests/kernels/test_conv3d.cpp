// conv3d CPU kernels: Reference and Gemm against PyTorch fixtures (scripts/gen_fixtures_conv.py), every backward
// against central finite differences, Gemm == Reference bit-exactly on small-integer data, Gemm vs Reference on
// every DynUNet conv layer shape at reduced extent, GradMode semantics, and clear errors for bad parameters.
//
// Tolerances (STYLE.md §2): fixtures hold float64 results of the same fp32 inputs, so the Reference (double
// accumulation) only rounds its output: rtol = 2u. The Gemm path accumulates in fp32 over a reduction of length
// R (fprop taps*C, dgrad taps*K, wgrad N*output voxels): rtol = 2u + sqrt(R)*u, atol = rtol * rms(ref); that is
// the size of a typical element's error, and the NMSE ceiling is rtol^2. The elementwise bound is checked on the
// worst of n elements, which for roughly Gaussian rounding errors sits near sqrt(2 ln n) standard deviations, so
// the elementwise rtol/atol carry that factor (first seen: wgrad of 256->128 k3 over 125 voxels, n = 884,736,
// at 1.27x the unfactored bound). u = 2^-24.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bench/dynunet_shapes.h"
#include "kernels/conv3d.h"
#include "tests/kernels/gradcheck.h"
#include "tests/testing.h"

namespace dex {
namespace {

using testing::check_close;
using testing::kUnitF32;

const char* impl_name(CpuConvImpl impl) { return impl == CpuConvImpl::Reference ? "reference" : "gemm"; }

double rms_of(const std::vector<double>& v) { return testing::rms(v); }

Conv3dParams params_from(const testing::FixtureTensor& t) {
  const auto& q = t.data;
  Conv3dParams p;
  p.N = int(q[0]), p.C = int(q[1]), p.K = int(q[2]), p.D = int(q[3]), p.H = int(q[4]), p.W = int(q[5]);
  p.KD = int(q[6]), p.KH = int(q[7]), p.KW = int(q[8]);
  for (int a = 0; a < 3; ++a) {
    p.stride[a] = int(q[9 + a]);
    p.pad[a] = int(q[12 + a]);
    p.dil[a] = int(q[15 + a]);
  }
  return p;
}

// rtol for an fp32-accumulating path over a reduction of length r; the reference accumulates in double.
double rtol_for(CpuConvImpl impl, int64_t r) {
  return 2 * kUnitF32 + (impl == CpuConvImpl::Gemm ? std::sqrt(double(r)) * kUnitF32 : 0.0);
}

// Compares with the header's tolerances: `rtol` from rtol_for, widened by sqrt(2 ln n) for the elementwise bound.
template <class R>
void expect_close_to(const std::string& what, const std::vector<float>& got, const R& ref, double rtol) {
  std::vector<double> r(ref.begin(), ref.end());
  ASSERT_EQ(got.size(), r.size()) << what;
  const double extreme = std::sqrt(2.0 * std::log(std::max<double>(2.0, double(r.size()))));
  const double rtol_elem = rtol * extreme;
  check_close(what, got.data(), r.data(), int64_t(r.size()), rtol_elem, rtol_elem * rms_of(r), rtol * rtol);
}

const char* kFixtures[] = {"conv3d_k3s1p1",      "conv3d_k3s2p1",        "conv3d_k3s221p1",
                           "conv3d_k1s2",        "conv3d_k1s221",        "conv3d_k1s1",
                           "conv3d_odd5x7x9_c3", "conv3d_batch2_k3s2p1", "conv3d_k3s1p2d2",
                           "conv3d_k231_s121_p101"};

// ---- PyTorch parity ------------------------------------------------------------------------------------
TEST(Conv3dCpu, conv3d_matches_pytorch_fixtures_fprop_dgrad_wgrad) {
  for (const char* name : kFixtures) {
    SCOPED_TRACE(name);
    auto fx = testing::load_fixture(testing::test_data(std::string("conv/") + name + ".bin"));
    const Conv3dParams p = params_from(fx.at("params"));
    const auto x = fx.at("x").f32(), w = fx.at("w").f32(), gy = fx.at("gy").f32();
    ASSERT_EQ(int64_t(x.size()), p.in_elems());
    ASSERT_EQ(int64_t(w.size()), p.weight_elems());
    ASSERT_EQ(int64_t(gy.size()), p.out_elems());
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm}) {
      const std::string tag = std::string(name) + " " + impl_name(impl);
      std::vector<float> y(p.out_elems()), dx(p.in_elems()), dw(p.weight_elems());
      conv3d_fprop_cpu(p, x.data(), w.data(), y.data(), impl);
      conv3d_dgrad_cpu(p, gy.data(), w.data(), dx.data(), GradMode::Overwrite, impl);
      conv3d_wgrad_cpu(p, x.data(), gy.data(), dw.data(), GradMode::Overwrite, impl);
      expect_close_to("conv3d fprop " + tag, y, fx.at("y").data, rtol_for(impl, p.taps() * p.C));
      expect_close_to("conv3d dgrad " + tag, dx, fx.at("dx").data, rtol_for(impl, p.taps() * p.K));
      expect_close_to("conv3d wgrad " + tag, dw, fx.at("dw").data, rtol_for(impl, p.out_voxels()));
    }
  }
}

// ---- finite differences ---------------------------------------------------------------------------------
std::vector<Conv3dParams> tiny_shapes() {
  std::vector<Conv3dParams> v;
  Conv3dParams a;  // k3 s2 p1
  a.C = 2, a.K = 3, a.D = 4, a.H = 5, a.W = 3;
  a.stride[0] = a.stride[1] = a.stride[2] = 2;
  a.pad[0] = a.pad[1] = a.pad[2] = 1;
  v.push_back(a);
  Conv3dParams b = a;  // k3 s(2,2,1) p1, batch 2
  b.N = 2, b.stride[2] = 1, b.W = 2;
  v.push_back(b);
  Conv3dParams c;  // k1 s2
  c.C = 3, c.K = 2, c.D = 3, c.H = 4, c.W = 5, c.KD = c.KH = c.KW = 1;
  c.stride[0] = c.stride[1] = c.stride[2] = 2;
  v.push_back(c);
  Conv3dParams d;  // k(2,3,2) dilation 2, pad (1,0,2)
  d.C = 2, d.K = 2, d.D = 4, d.H = 5, d.W = 4, d.KD = 2, d.KH = 3, d.KW = 2;
  d.dil[0] = d.dil[1] = d.dil[2] = 2;
  d.pad[0] = 1, d.pad[2] = 2;
  v.push_back(d);
  return v;
}

TEST(Conv3dCpu, conv3d_dgrad_and_wgrad_match_finite_differences) {
  int idx = 0;
  for (const Conv3dParams& p : tiny_shapes()) {
    SCOPED_TRACE(str("tiny shape ", idx));
    std::vector<float> x = testing::random_vector(p.in_elems(), 11 + idx);
    std::vector<float> w = testing::random_vector(p.weight_elems(), 21 + idx);
    const std::vector<float> gy = testing::random_vector(p.out_elems(), 31 + idx);
    testing::grid_inputs(x);
    testing::grid_inputs(w);
    auto fwd_x = [&](const std::vector<float>& xx) {
      std::vector<float> y(p.out_elems());
      conv3d_fprop_cpu(p, xx.data(), w.data(), y.data(), CpuConvImpl::Reference);
      return std::vector<double>(y.begin(), y.end());
    };
    auto fwd_w = [&](const std::vector<float>& ww) {
      std::vector<float> y(p.out_elems());
      conv3d_fprop_cpu(p, x.data(), ww.data(), y.data(), CpuConvImpl::Reference);
      return std::vector<double>(y.begin(), y.end());
    };
    for (CpuConvImpl impl : {CpuConvImpl::Reference, CpuConvImpl::Gemm}) {
      std::vector<float> dx(p.in_elems()), dw(p.weight_elems());
      conv3d_dgrad_cpu(p, gy.data(), w.data(), dx.data(), GradMode::Overwrite, impl);
      conv3d_wgrad_cpu(p, x.data(), gy.data(), dw.data(), GradMode::Overwrite, impl);
      // The op is linear, so the stencil has no truncation error: rtol only covers the backward's fp32 rounding.
      const double rtol_dx = rtol_for(CpuConvImpl::Gemm, p.taps() * p.K);
      const double rtol_dw = rtol_for(CpuConvImpl::Gemm, p.out_voxels());
      std::cout << "conv3d dgrad " << impl_name(impl) << " tiny " << idx << "\n";
      EXPECT_GRADCHECK(testing::gradcheck(x, fwd_x, gy, dx, 1.0 / 16, rtol_dx));
      std::cout << "conv3d wgrad " << impl_name(impl) << " tiny " << idx << "\n";
      EXPECT_GRADCHECK(testing::gradcheck(w, fwd_w, gy, dw, 1.0 / 16, rtol_dw));
    }
    ++idx;
  }
}

// ---- exactness: small integers, Gemm == Reference bit for bit --------------------------------------------
void expect_bit_equal(const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int64_t bad = -1;
  for (size_t i = 0; i < a.size() && bad < 0; ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) bad = int64_t(i);
  EXPECT_EQ(bad, -1) << what << ": first difference at " << bad << ": " << a[size_t(std::max<int64_t>(bad, 0))]
                     << " vs " << b[size_t(std::max<int64_t>(bad, 0))];
}

// Runs all three passes with small-integer data (|sums| < 2^24, so fp32 is exact in any order) and checks the
// Gemm path equals the Reference exactly, including GradMode::Accumulate on top of integer prior contents.
void exactness_pass(const std::string& what, const Conv3dParams& p, uint64_t seed) {
  const auto x = testing::random_ints(p.in_elems(), seed, -1, 1);
  const auto w = testing::random_ints(p.weight_elems(), seed + 1, -1, 1);
  const auto gy = testing::random_ints(p.out_elems(), seed + 2, -1, 1);
  const auto prior_dx = testing::random_ints(p.in_elems(), seed + 3, -2, 2);
  const auto prior_dw = testing::random_ints(p.weight_elems(), seed + 4, -2, 2);
  std::vector<float> y[2], dx[2], dw[2], dxa[2], dwa[2];
  const CpuConvImpl impls[2] = {CpuConvImpl::Reference, CpuConvImpl::Gemm};
  for (int i = 0; i < 2; ++i) {
    y[i].assign(p.out_elems(), NAN);
    dx[i].assign(p.in_elems(), NAN);  // Overwrite must not read the output
    dw[i].assign(p.weight_elems(), NAN);
    dxa[i] = prior_dx;
    dwa[i] = prior_dw;
    conv3d_fprop_cpu(p, x.data(), w.data(), y[i].data(), impls[i]);
    conv3d_dgrad_cpu(p, gy.data(), w.data(), dx[i].data(), GradMode::Overwrite, impls[i]);
    conv3d_wgrad_cpu(p, x.data(), gy.data(), dw[i].data(), GradMode::Overwrite, impls[i]);
    conv3d_dgrad_cpu(p, gy.data(), w.data(), dxa[i].data(), GradMode::Accumulate, impls[i]);
    conv3d_wgrad_cpu(p, x.data(), gy.data(), dwa[i].data(), GradMode::Accumulate, impls[i]);
  }
  expect_bit_equal(what + " fprop", y[1], y[0]);
  expect_bit_equal(what + " dgrad", dx[1], dx[0]);
  expect_bit_equal(what + " wgrad", dw[1], dw[0]);
  expect_bit_equal(what + " dgrad accumulate", dxa[1], dxa[0]);
  expect_bit_equal(what + " wgrad accumulate", dwa[1], dwa[0]);
  // Accumulate adds exactly the Overwrite result to the prior contents (integers: exact).
  for (size_t i = 0; i < dxa[0].size(); ++i)
    ASSERT_EQ(dxa[0][i], prior_dx[i] + dx[0][i]) << what << " dgrad accumulate at " << i;
  for (size_t i = 0; i < dwa[0].size(); ++i)
    ASSERT_EQ(dwa[0][i], prior_dw[i] + dw[0][i]) << what << " wgrad accumulate at " << i;
}

TEST(Conv3dCpu, conv3d_gemm_equals_reference_exactly_on_small_integers) {
  int idx = 0;
  for (const Conv3dParams& p : tiny_shapes()) {
    exactness_pass(str("tiny ", idx), p, 100 + idx);
    ++idx;
  }
  Conv3dParams odd;  // odd extents, C = 3, k3 s1 p1
  odd.C = 3, odd.K = 5, odd.D = 5, odd.H = 7, odd.W = 9;
  odd.pad[0] = odd.pad[1] = odd.pad[2] = 1;
  exactness_pass("odd 5x7x9 C3", odd, 200);
  Conv3dParams pw;  // 1x1x1 stride 1: the no-im2col path
  pw.N = 2, pw.C = 7, pw.K = 5, pw.D = 3, pw.H = 4, pw.W = 5, pw.KD = pw.KH = pw.KW = 1;
  exactness_pass("pointwise", pw, 300);
}

// More output voxels than one im2col chunk holds (C = 1: 108-byte rows), so chunk boundaries are crossed in
// fprop, in dgrad's col2im scatter and in wgrad's chunk accumulation.
TEST(Conv3dCpu, conv3d_gemm_equals_reference_across_workspace_chunks) {
  Conv3dParams p;
  p.C = 1, p.K = 2, p.D = p.H = p.W = 30;
  p.pad[0] = p.pad[1] = p.pad[2] = 1;
  const size_t ws = conv3d_cpu_workspace_bytes(p);
  ASSERT_LT(int64_t(ws / (p.taps() * p.C * sizeof(float))), p.out_voxels()) << "shape must need several chunks";
  exactness_pass("multi-chunk k3", p, 400);
  // and with a caller-provided workspace
  std::vector<unsigned char> buf(ws);
  const auto x = testing::random_ints(p.in_elems(), 5, -1, 1), w = testing::random_ints(p.weight_elems(), 6, -1, 1);
  std::vector<float> a(p.out_elems()), b(p.out_elems());
  conv3d_fprop_cpu(p, x.data(), w.data(), a.data(), CpuConvImpl::Gemm, buf.data());
  conv3d_fprop_cpu(p, x.data(), w.data(), b.data(), CpuConvImpl::Reference);
  expect_bit_equal("multi-chunk with workspace", a, b);
}

// The Gemm path gives the same bits with 1 and 2 OpenMP threads (fprop chunks and wgrad runs are fixed by the
// shape, not by the thread count), real-valued data over several chunks.
TEST(Conv3dCpu, conv3d_gemm_is_independent_of_thread_count) {
  Conv3dParams p;
  p.C = 3, p.K = 4, p.D = 20, p.H = 18, p.W = 17;
  p.pad[0] = p.pad[1] = p.pad[2] = 1;
  p.stride[2] = 2;
  const auto x = testing::random_vector(p.in_elems(), 71), w = testing::random_vector(p.weight_elems(), 72);
  const auto gy = testing::random_vector(p.out_elems(), 73);
  std::vector<float> y[2], dx[2], dw[2];
  const int saved = omp_get_max_threads();
  for (int t = 0; t < 2; ++t) {
    omp_set_num_threads(t + 1);
    y[t].resize(p.out_elems());
    dx[t].resize(p.in_elems());
    dw[t].resize(p.weight_elems());
    conv3d_fprop_cpu(p, x.data(), w.data(), y[t].data());
    conv3d_dgrad_cpu(p, gy.data(), w.data(), dx[t].data());
    conv3d_wgrad_cpu(p, x.data(), gy.data(), dw[t].data(), GradMode::Overwrite);
  }
  omp_set_num_threads(saved);
  expect_bit_equal("fprop 1 vs 2 threads", y[1], y[0]);
  expect_bit_equal("dgrad 1 vs 2 threads", dx[1], dx[0]);
  expect_bit_equal("wgrad 1 vs 2 threads", dw[1], dw[0]);
}

TEST(Conv3dCpu, conv3d_workspace_stays_bounded_at_dynunet_128) {
  for (const ConvLayerShape& s : dynunet_conv_shapes(128)) {
    if (s.transposed) continue;
    const size_t ws = conv3d_cpu_workspace_bytes(s.conv);
    EXPECT_LE(ws, size_t(256) << 20) << s.name << " " << s.describe();
  }
}

// ---- Gemm vs Reference on every DynUNet conv layer shape (reduced extent) ------------------------------
// Real channels, kernels and strides; the patch-32 extents clamped to at most 4 per axis (the Reference on the
// 320/512/640-channel layers dominates this suite's time). Random real data, all three passes.
TEST(Conv3dCpu, conv3d_gemm_matches_reference_on_every_dynunet_layer) {
  int count = 0;
  for (const ConvLayerShape& full : dynunet_conv_shapes(32)) {
    if (full.transposed) continue;
    const ConvLayerShape s = clamp_extent(full, 4);
    const Conv3dParams& p = s.conv;
    const std::string tag = s.name + " (" + s.describe() + ")";
    SCOPED_TRACE(tag);
    const auto x = testing::random_vector(p.in_elems(), 500 + count);
    const auto w = testing::random_vector(p.weight_elems(), 600 + count);
    const auto gy = testing::random_vector(p.out_elems(), 700 + count);
    std::vector<float> yr(p.out_elems()), yg(p.out_elems()), dxr(p.in_elems()), dxg(p.in_elems()),
        dwr(p.weight_elems()), dwg(p.weight_elems());
    conv3d_fprop_cpu(p, x.data(), w.data(), yr.data(), CpuConvImpl::Reference);
    conv3d_fprop_cpu(p, x.data(), w.data(), yg.data(), CpuConvImpl::Gemm);
    conv3d_dgrad_cpu(p, gy.data(), w.data(), dxr.data(), GradMode::Overwrite, CpuConvImpl::Reference);
    conv3d_dgrad_cpu(p, gy.data(), w.data(), dxg.data(), GradMode::Overwrite, CpuConvImpl::Gemm);
    conv3d_wgrad_cpu(p, x.data(), gy.data(), dwr.data(), GradMode::Overwrite, CpuConvImpl::Reference);
    conv3d_wgrad_cpu(p, x.data(), gy.data(), dwg.data(), GradMode::Overwrite, CpuConvImpl::Gemm);
    expect_close_to("conv3d fprop gemm vs reference " + tag, yg, yr, rtol_for(CpuConvImpl::Gemm, p.taps() * p.C));
    expect_close_to("conv3d dgrad gemm vs reference " + tag, dxg, dxr, rtol_for(CpuConvImpl::Gemm, p.taps() * p.K));
    expect_close_to("conv3d wgrad gemm vs reference " + tag, dwg, dwr, rtol_for(CpuConvImpl::Gemm, p.out_voxels()));
    ++count;
  }
  EXPECT_EQ(count, 29);  // 34 layers minus the 5 transposed ones
}

// ---- bad parameters -------------------------------------------------------------------------------------
TEST(Conv3dCpu, conv3d_rejects_bad_params_with_clear_errors) {
  Conv3dParams ok;
  ok.C = 2, ok.K = 2, ok.D = ok.H = ok.W = 4;
  ok.pad[0] = ok.pad[1] = ok.pad[2] = 1;
  EXPECT_NO_THROW(ok.validate());
  std::vector<float> buf(4096);
  auto expect_error = [&](Conv3dParams p, const std::string& needle) {
    try {
      conv3d_fprop_cpu(p, buf.data(), buf.data(), buf.data());
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Conv3dParams p = ok;
  p.stride[1] = 0;
  expect_error(p, "stride[1]");
  p = ok;
  p.C = 0;
  expect_error(p, "C=0");
  p = ok;
  p.pad[0] = 0, p.KD = 5;  // 4 - 5 + 1 = 0 output planes
  expect_error(p, "output extent");
  p = ok;
  p.dil[2] = 0;
  expect_error(p, "dilation[2]");
  EXPECT_THROW(conv3d_fprop_cpu(ok, nullptr, buf.data(), buf.data()), Error);
  EXPECT_THROW(conv3d_cpu_workspace_bytes(p), Error);
}

}  // namespace
}  // namespace dex
