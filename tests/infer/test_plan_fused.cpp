// GPU tests of the fused fp16 kernels (infer/plan_conv_fused.h) and of the InferencePlan's fused f16 executor. They
// skip, saying why, where no CUDA device is present (their CPU halves: test_plan_fused_layout.cpp).
//   FusedKernels.*   each fused kernel against the double oracle of plan_fused_reference.h (the same fp16 operands,
//                    so only summation order differs), Direct and Mma variants, NaN guard bands around the outputs,
//                    statistics against double statistics of the kernel's own stored outputs, two runs bitwise.
//   FusedPlan.*      fused f16 vs unfused f16 vs the CPU f32 plan on tiny DynUNets (one with 4-8-16-32 filters: the
//                    Direct kernels and the unfused transposed-conv fallback; one with 32-32-64-64: the Mma kernels),
//                    determinism, and the bundle's network at 128^3: mask Dice >= 0.999 against the CUDA f32 plan.
// On a GPU: <build>/tests/dex_tests_infer --gtest_filter='Fused*:InferencePlan.Cuda*', then the timings:
// <build>/infer/dex-plan-bench --device cuda --table --runs 20 (f32, f16 unfused, f16 fused at 128^3).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "infer/inference_plan.h"
#include "infer/plan_conv_fused.h"
#include "kernels/arena.h"
#include "kernels/backend.h"
#include "kernels/half.h"
#include "tests/infer/plan_fused_reference.h"
#include "tests/testing.h"

using namespace dex;
using namespace dex::testing;

namespace {

constexpr uint16_t kNanBits = 0x7e01;  // an fp16 NaN pattern for guard bands and poison
constexpr size_t kGuard = 256;         // guard elements on each side of an output

#define SKIP_WITHOUT_CUDA()                                                   \
  do {                                                                        \
    std::string why_;                                                         \
    if (!backend_available(Device::CUDA, &why_)) GTEST_SKIP() << "no CUDA device: " << why_; \
  } while (0)

#if defined(DEX_HAVE_CUDA)  // the kernel tests call plan_fused:: directly (defined where dex_cuda is built)
// Device memory with host round trips.
struct Dev {
  Buffer buf;
  Dev() = default;
  explicit Dev(size_t bytes) : buf(*backend(Device::CUDA).allocator, std::max<size_t>(bytes, 16)) {}
  void put(const void* src, size_t bytes, size_t offset = 0) {
    backend(Device::CUDA).copy(buf.as<char>() + offset, Device::CUDA, src, Device::CPU, bytes, nullptr);
  }
  void get(void* dst, size_t bytes, size_t offset = 0) const {
    backend(Device::CUDA).synchronize(nullptr);
    backend(Device::CUDA).copy(dst, Device::CPU, buf.as<char>() + offset, Device::CUDA, bytes, nullptr);
  }
  template <class T> T* at(size_t offset_bytes = 0) const { return reinterpret_cast<T*>(buf.as<char>() + offset_bytes); }
};

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_f16_bits(v[i]);
  return h;
}
std::vector<float> from_f16(const std::vector<uint16_t>& h) {
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = f16_bits_to_f32(h[i]);
  return v;
}
Dev upload_f16(const std::vector<float>& v) {
  Dev d(v.size() * 2);
  const std::vector<uint16_t> h = to_f16(v);
  d.put(h.data(), h.size() * 2);
  return d;
}
Dev upload_f32(const std::vector<float>& v) {
  Dev d(v.size() * 4);
  d.put(v.data(), v.size() * 4);
  return d;
}

// An fp16 output with NaN guard bands (kGuard elements each side), poisoned inside.
struct Guarded {
  Dev d;
  size_t n = 0;
  explicit Guarded(size_t elems) : d((elems + 2 * kGuard) * 2), n(elems) {
    std::vector<uint16_t> nan(elems + 2 * kGuard, kNanBits);
    d.put(nan.data(), nan.size() * 2);
  }
  void* ptr() const { return d.at<uint16_t>() + kGuard; }
  // The output, after checking the bands are intact and every element was written (no NaN left).
  std::vector<float> read(const char* what) const {
    std::vector<uint16_t> h(n + 2 * kGuard);
    d.get(h.data(), h.size() * 2);
    for (size_t i = 0; i < kGuard; ++i) {
      EXPECT_EQ(h[i], kNanBits) << what << ": write below the output at " << i;
      EXPECT_EQ(h[kGuard + n + i], kNanBits) << what << ": write past the output at " << i;
    }
    std::vector<uint16_t> body(h.begin() + kGuard, h.begin() + kGuard + n);
    std::vector<float> v = from_f16(body);
    size_t unwritten = 0;
    for (float x : v) unwritten += std::isnan(x);
    EXPECT_EQ(unwritten, 0u) << what << ": elements never written";
    return v;
  }
};

RefOperand operand(int N, int C, Int3 sp, uint64_t seed, bool norm, bool affine, bool lrelu) {
  RefOperand o;
  o.C = C;
  o.x = f16_vector(int64_t(N) * sp[0] * sp[1] * sp[2] * C, seed, -2.f, 3.f);
  if (norm) {
    o.mean = random_vector(int64_t(N) * C, seed + 1, 0.5f, 1.5f);
    o.rstd = random_vector(int64_t(N) * C, seed + 2, 0.5f, 2.f);
    o.lrelu = lrelu;
    if (affine) {
      o.gamma = random_vector(C, seed + 3, 0.5f, 1.5f);
      o.beta = random_vector(C, seed + 4, -0.5f, 0.5f);
    }
  }
  return o;
}

// A RefOperand on the device.
struct DevOperand {
  Dev x, mean, rstd, gamma, beta;
  plan_fused::Operand op;
  explicit DevOperand(const RefOperand& o) : x(upload_f16(o.x)) {
    op.x = x.buf.data();
    op.channels = o.C;
    if (!o.mean.empty()) {
      mean = upload_f32(o.mean);
      rstd = upload_f32(o.rstd);
      op.mean = mean.at<float>();
      op.rstd = rstd.at<float>();
      op.lrelu = o.lrelu;
      if (!o.gamma.empty()) {
        gamma = upload_f32(o.gamma);
        beta = upload_f32(o.beta);
        op.gamma = gamma.at<float>();
        op.beta = beta.at<float>();
      }
    }
  }
};

struct KernelCase {
  std::string name;
  Conv3dParams conv;
  RefOperand in[2];
  int num_in = 1;
  bool proj = false;
};

std::vector<KernelCase> kernel_cases() {
  std::vector<KernelCase> cs;
  auto add = [&](std::string name, Conv3dParams p, RefOperand a, bool proj) {
    KernelCase c;
    c.name = std::move(name);
    c.conv = p;
    c.in[0] = std::move(a);
    c.proj = proj;
    cs.push_back(std::move(c));
  };
  add("N2C32K64 9x8x7 norm+lrelu", conv_params(2, 32, 64, {9, 8, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
      operand(2, 32, {9, 8, 7}, 10, true, false, true), false);
  add("N1C64K32 6x6x6 affine", conv_params(1, 64, 32, {6, 6, 6}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
      operand(1, 64, {6, 6, 6}, 20, true, true, true), false);
  add("N2C32K64 10x9x8 s2 proj", conv_params(2, 32, 64, {10, 9, 8}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}),
      operand(2, 32, {10, 9, 8}, 30, false, false, false), true);
  add("N1C64K32 12x10x9 s221 proj", conv_params(1, 64, 32, {12, 10, 9}, {3, 3, 3}, {2, 2, 1}, {1, 1, 1}),
      operand(1, 64, {12, 10, 9}, 40, false, false, false), true);
  add("N2C3K32 9x7x6 proj (input block)", conv_params(2, 3, 32, {9, 7, 6}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
      operand(2, 3, {9, 7, 6}, 50, false, false, false), true);
  add("N1C8K8 5x6x7 norm", conv_params(1, 8, 8, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
      operand(1, 8, {5, 6, 7}, 60, true, false, true), false);
  {
    KernelCase c;  // the decoder's conv1: transposed-conv output (raw) + skip (stored)
    c.name = "N2 32+32 K32 8x8x6 concat-free";
    c.conv = conv_params(2, 64, 32, {8, 8, 6}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    c.in[0] = operand(2, 32, {8, 8, 6}, 70, false, false, false);
    c.in[1] = operand(2, 32, {8, 8, 6}, 80, false, false, false);
    c.num_in = 2;
    cs.push_back(c);
  }
  {
    KernelCase c;  // both operands normalised (general case)
    c.name = "N1 64+32 K64 5x7x9 both normed";
    c.conv = conv_params(1, 96, 64, {5, 7, 9}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
    c.in[0] = operand(1, 64, {5, 7, 9}, 90, true, false, true);
    c.in[1] = operand(1, 32, {5, 7, 9}, 95, true, true, false);
    c.num_in = 2;
    cs.push_back(c);
  }
  return cs;
}

#endif

}  // namespace

#if defined(DEX_HAVE_CUDA)
TEST(FusedKernels, ConvMatchesTheDoubleOracleDirectAndMma) {
  SKIP_WITHOUT_CUDA();
  const float slope = 0.01f, eps = 1e-5f;
  for (const KernelCase& c : kernel_cases()) {
    const Conv3dParams& p = c.conv;
    Conv3dParams pp = p;
    pp.KD = pp.KH = pp.KW = 1;
    pp.pad[0] = pp.pad[1] = pp.pad[2] = 0;
    const std::vector<float> w = f16_vector(p.weight_elems(), 7, -0.2f, 0.2f);
    const std::vector<float> pw = f16_vector(pp.weight_elems(), 8, -0.4f, 0.4f);
    const std::vector<double> a = ref_materialise(c.in[0], p.N, slope);
    std::vector<double> b;
    if (c.num_in == 2) b = ref_materialise(c.in[1], p.N, slope);
    const std::vector<double> yref =
        round_all_f16(ref_conv(p, a, c.in[0].C, c.num_in == 2 ? &b : nullptr, c.num_in == 2 ? c.in[1].C : 0, w));
    const std::vector<double> pref = round_all_f16(ref_conv(pp, a, c.in[0].C, nullptr, 0, pw));

    DevOperand d0(c.in[0]);
    std::unique_ptr<DevOperand> d1;
    if (c.num_in == 2) d1 = std::make_unique<DevOperand>(c.in[1]);
    Dev dw = upload_f16(w), dpw = upload_f16(pw);
    const int64_t S = p.out_voxels() / p.N;
    Dev stats(4 * 4 * size_t(p.N) * p.K), part(fused::partial_bytes(p.N, p.K, S)), ppart(part.buf.size());
    for (plan_fused::Variant v : {plan_fused::Variant::Direct, plan_fused::Variant::Mma}) {
      const std::string what = c.name + " " + plan_fused::variant_name(v);
      Guarded y(size_t(p.out_elems())), py(size_t(p.out_elems()));
      plan_fused::ConvJob j;
      j.conv = p;
      j.num_in = c.num_in;
      j.in[0] = d0.op;
      if (d1) j.in[1] = d1->op;
      j.w = dw.buf.data();
      j.y = y.ptr();
      j.stats = {stats.at<float>(), stats.at<float>() + p.N * p.K, eps, part.buf.data()};
      if (c.proj) {
        j.proj = pp;
        j.proj_w = dpw.buf.data();
        j.proj_y = py.ptr();
        j.proj_stats = {stats.at<float>() + 2 * p.N * p.K, stats.at<float>() + 3 * p.N * p.K, eps, ppart.buf.data()};
      }
      j.slope = slope;
      std::string why;
      if (!plan_fused::conv_supports(j, v, &why)) {
        EXPECT_EQ(v, plan_fused::Variant::Mma) << what << ": " << why;  // Direct runs every case
        std::printf("[ %-34s] not supported: %s\n", what.c_str(), why.c_str());
        continue;
      }
      plan_fused::conv(j, v, nullptr);
      const std::vector<float> got = y.read(what.c_str());
      std::vector<float> st(4 * size_t(p.N) * p.K);
      stats.get(st.data(), st.size() * 4);
      const size_t nk = size_t(p.N) * p.K;
      expect_outputs_close(yref, got, p.taps() * p.C, what);
      expect_stats_of(got, p.N, p.K, eps, {st.begin(), st.begin() + nk}, {st.begin() + nk, st.begin() + 2 * nk}, what);
      std::vector<float> pgot;
      if (c.proj) {
        pgot = py.read((what + " proj").c_str());
        expect_outputs_close(pref, pgot, p.C, what + " proj");
        expect_stats_of(pgot, p.N, p.K, eps, {st.begin() + 2 * nk, st.begin() + 3 * nk}, {st.begin() + 3 * nk, st.end()},
                        what + " proj");
      }
      // Deterministic: the same bits again.
      plan_fused::conv(j, v, nullptr);
      std::vector<float> st2(st.size());
      stats.get(st2.data(), st2.size() * 4);
      const std::vector<float> again = y.read(what.c_str());
      EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * 4)) << what;
      EXPECT_EQ(0, std::memcmp(st.data(), st2.data(), (c.proj ? 4 : 2) * nk * 4)) << what;
      if (c.proj) {
        const std::vector<float> pagain = py.read(what.c_str());
        EXPECT_EQ(0, std::memcmp(pgot.data(), pagain.data(), pgot.size() * 4)) << what;
      }
    }
  }
}

TEST(FusedKernels, TransposedConvWithPrologueMatchesTheOracle) {
  SKIP_WITHOUT_CUDA();
  const float slope = 0.01f;
  for (Int3 k : {Int3{2, 2, 2}, Int3{2, 2, 1}}) {
    ConvTranspose3dParams p;
    p.N = 2;
    p.C = 64;
    p.K = 32;
    p.D = 5;
    p.H = 4;
    p.W = 3;
    p.KD = k[0];
    p.KH = k[1];
    p.KW = k[2];
    for (int a = 0; a < 3; ++a) {
      p.stride[a] = k[a];
      p.pad[a] = 0;
    }
    p.validate();
    const RefOperand in = operand(p.N, p.C, {p.D, p.H, p.W}, 120 + k[2], true, false, true);
    const std::vector<float> w = f16_vector(p.weight_elems(), 121, -0.3f, 0.3f);  // [K][taps][C]
    const std::vector<double> x = ref_materialise(in, p.N, slope);
    const int taps = int(p.taps());
    std::vector<double> ref(size_t(p.out_elems()));
    for (int n = 0; n < p.N; ++n)
      for (int i = 0; i < p.D; ++i)
        for (int jj = 0; jj < p.H; ++jj)
          for (int l = 0; l < p.W; ++l)
            for (int tap = 0; tap < taps; ++tap) {
              const int ta = tap / (p.KH * p.KW), tb = (tap / p.KW) % p.KH, tc = tap % p.KW;
              const size_t vin = ((size_t(n) * p.D + i) * p.H + jj) * p.W + l;
              const size_t vout = ((size_t(n) * p.OD() + i * p.KD + ta) * p.OH() + jj * p.KH + tb) * p.OW() + l * p.KW + tc;
              for (int kk = 0; kk < p.K; ++kk) {
                double s = 0;
                for (int c = 0; c < p.C; ++c) s += x[vin * p.C + c] * w[(size_t(kk) * taps + tap) * p.C + c];
                ref[vout * p.K + kk] = round_f16(float(s));
              }
            }
    DevOperand d(in);
    Dev dw = upload_f16(w);
    Guarded y(size_t(p.out_elems()));
    std::string why;
    ASSERT_TRUE(plan_fused::conv_transpose_supports(p, d.op, &why)) << why;
    plan_fused::conv_transpose(p, d.op, dw.buf.data(), y.ptr(), slope, nullptr);
    expect_outputs_close(ref, y.read("transposed"), p.C, "transposed conv k" + std::to_string(k[2]));
  }
}

// Residual and head: the same fp32 arithmetic as the CPU lines below (normalise_value, fp16 rounding, f_add, fmaf
// in channel order), so logits, masks and residual outputs must be bit-equal; probabilities (double exp on each
// side) within 4 ulp.
TEST(FusedKernels, ResidualAndHeadEqualTheirCpuArithmetic) {
  SKIP_WITHOUT_CUDA();
  const float slope = 0.01f;
  const int N = 2;
  for (int C : {32, 4}) {  // 16-byte path and scalar path
    const int64_t S = 5 * 6 * 7;
    const RefOperand h = operand(N, C, {5, 6, 7}, 200 + C, true, false, false);
    const RefOperand r = operand(N, C, {5, 6, 7}, 300 + C, C == 32, C == 32, false);
    DevOperand dh(h), dr(r);
    Guarded y(size_t(N * S * C));
    plan_fused::residual(N, S, C, dh.op, dr.op, y.ptr(), true, slope, nullptr);
    const std::vector<float> got = y.read("residual");
    const std::vector<double> hv = ref_materialise(h, N, slope), rv = ref_materialise(r, N, slope);
    for (size_t i = 0; i < got.size(); ++i) {
      const float want = round_f16(fused::lrelu_value(fused::f_add(float(hv[i]), float(rv[i])), slope));
      ASSERT_EQ(f32_bits(got[i]), f32_bits(want)) << "C " << C << " element " << i;
    }
  }
  {
    const int C = 32, K = 2;
    const int64_t S = 9 * 8 * 7;
    const RefOperand x = operand(N, C, {9, 8, 7}, 400, true, false, true);
    const std::vector<float> w = random_vector(K * C, 401, -0.5f, 0.5f), bias = random_vector(K, 402, -0.1f, 0.1f);
    DevOperand dx(x);
    Dev dw = upload_f32(w), db = upload_f32(bias), z(N * S * K * 4), pr(N * S * K * 4), m(N * S);
    plan_fused::head(N, S, dx.op, K, dw.at<float>(), db.at<float>(), z.at<float>(), pr.at<float>(), m.at<uint8_t>(),
                     slope, nullptr);
    std::vector<float> zg(size_t(N * S * K)), pg(zg.size());
    std::vector<uint8_t> mg(size_t(N * S));
    z.get(zg.data(), zg.size() * 4);
    pr.get(pg.data(), pg.size() * 4);
    m.get(mg.data(), mg.size());
    const std::vector<double> xv = ref_materialise(x, N, slope);
    for (int64_t v = 0; v < N * S; ++v) {
      float acc[K] = {0.f, 0.f};
      for (int c = 0; c < C; ++c)
        for (int k = 0; k < K; ++k) acc[k] = std::fma(float(xv[size_t(v * C + c)]), w[k * C + c], acc[k]);
      const float z0 = acc[0] + bias[0], z1 = acc[1] + bias[1];
      ASSERT_EQ(f32_bits(zg[v * K]), f32_bits(z0)) << v;
      ASSERT_EQ(f32_bits(zg[v * K + 1]), f32_bits(z1)) << v;
      ASSERT_EQ(mg[v], z1 > z0 ? 1 : 0) << v;
      const double mx = std::max(double(z0), double(z1)), e0 = std::exp(z0 - mx), e1 = std::exp(z1 - mx);
      EXPECT_NEAR(pg[v * K], e0 / (e0 + e1), 4 * kU32);
      EXPECT_NEAR(pg[v * K + 1], e1 / (e0 + e1), 4 * kU32);
    }
  }
}

#else
TEST(FusedKernels, ConvMatchesTheDoubleOracleDirectAndMma) { GTEST_SKIP() << "dex was built without CUDA"; }
TEST(FusedKernels, TransposedConvWithPrologueMatchesTheOracle) { GTEST_SKIP() << "dex was built without CUDA"; }
TEST(FusedKernels, ResidualAndHeadEqualTheirCpuArithmetic) { GTEST_SKIP() << "dex was built without CUDA"; }
#endif

// ---- the plan ------------------------------------------------------------------------------------------------------
namespace {

DynUNetConfig tiny_config(std::vector<int> filters) {
  DynUNetConfig c;
  c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  c.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 2}, {2, 2, 1}};
  c.filters = std::move(filters);
  return c;
}

double relative_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0, nrm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    nrm += double(ref[i]) * ref[i];
  }
  return std::sqrt(err / nrm);
}

int64_t flips(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t f = 0;
  for (size_t i = 0; i < a.size(); ++i) f += a[i] != b[i];
  return f;
}

double dice1(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double inter = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    inter += a[i] == 1 && b[i] == 1;
    na += a[i] == 1;
    nb += b[i] == 1;
  }
  return na + nb > 0 ? 2 * inter / (na + nb) : 1.0;
}

// Fused f16 vs unfused f16 vs CPU f32. Bounds (STYLE.md §2, as test_inference_plan.cpp's f16 test): against f32,
// every layer rounds inputs and weights to fp16 (2 u16), a random walk over the longest path's L layers, instance
// norm rescaling up to ~10x: sqrt(2 L) u16 10. Fused against unfused: the same fp16 operands, only summation orders
// differ, flipping at most one fp16 rounding (u16) per element and layer: sqrt(L) u16 10. Masks: <= 1% flips.
void expect_fused_plan_close(const DynUNet& net, int N, Int3 sp, uint64_t seed, int L) {
  PlanOptions cpu_o, fused_o, unfused_o;
  cpu_o.batch = fused_o.batch = unfused_o.batch = N;
  fused_o.device = unfused_o.device = Device::CUDA;
  fused_o.precision = unfused_o.precision = DType::F16;
  unfused_o.fused = false;
  InferencePlan cpu(net, sp, cpu_o), fz(net, sp, fused_o), un(net, sp, unfused_o);
  ASSERT_TRUE(fz.fused()) << "DEX_PLAN_UNFUSED=1 is set: the fused path cannot be tested";
  ASSERT_FALSE(un.fused());
  const int64_t nin = int64_t(N) * sp[0] * sp[1] * sp[2] * net.config().in_channels;
  std::vector<float> x = random_vector(nin, seed, 0.f, 1.f);
  cpu.run(x.data());
  fz.poison_arena();
  un.poison_arena();
  fz.run(x.data());
  un.run(x.data());
  const std::vector<float> ref(cpu.logits(), cpu.logits() + cpu.output_voxels() * 2);
  const std::vector<float> zf = fz.logits_host(), zu = un.logits_host();
  const std::vector<uint8_t> mc(cpu.mask(), cpu.mask() + cpu.output_voxels()), mf = fz.mask_host(), mu = un.mask_host();
  const double b32 = std::sqrt(2.0 * L) * kU16 * 10, bfu = std::sqrt(double(L)) * kU16 * 10;
  const double ef = relative_l2(zf, ref), eu = relative_l2(zu, ref), efu = relative_l2(zf, zu);
  std::printf("[ fused plan ] logits rel. L2: fused vs f32 %.3g (%.0f%% of %.3g), unfused vs f32 %.3g, fused vs "
              "unfused %.3g (%.0f%% of %.3g); mask flips fused/f32 %lld, fused/unfused %lld of %lld\n",
              ef, 100 * ef / b32, b32, eu, efu, 100 * efu / bfu, bfu, (long long)flips(mf, mc),
              (long long)flips(mf, mu), (long long)mc.size());
  EXPECT_LE(ef, b32);
  EXPECT_LE(efu, bfu);
  EXPECT_LE(double(flips(mf, mc)), 0.01 * double(mc.size()));
  EXPECT_LE(double(flips(mf, mu)), 0.01 * double(mc.size()));
  // Deterministic: a second replay gives the same logits, probabilities and mask, bit for bit.
  const std::vector<float> pf = fz.probabilities_host();
  fz.run(x.data());
  EXPECT_EQ(0, std::memcmp(zf.data(), fz.logits_host().data(), zf.size() * 4));
  EXPECT_EQ(0, std::memcmp(pf.data(), fz.probabilities_host().data(), pf.size() * 4));
  EXPECT_EQ(mf, fz.mask_host());
}

}  // namespace

TEST(FusedPlan, TinyNetsFusedMatchUnfusedAndCpu) {
  SKIP_WITHOUT_CUDA();
  {
    DynUNet net(tiny_config({4, 8, 16, 32}));  // Direct kernels, transposed convs through the unfused fallback
    net.init(51);
    expect_fused_plan_close(net, 2, {16, 16, 12}, 52, 13);
  }
  {
    DynUNet net(tiny_config({32, 32, 64, 64}));  // Mma kernels (all but input_block.conv1), fused transposed convs
    net.init(53);
    expect_fused_plan_close(net, 2, {16, 16, 8}, 54, 13);
  }
  {
    DynUNet net;  // the bundle's network (28 layers deep)
    net.init(55);
    expect_fused_plan_close(net, 1, {32, 32, 32}, 56, 28);
  }
}

// The bundle's network at 128^3 (seeded weights, uniform input): the fused f16 mask against the CUDA f32 plan's.
TEST(FusedPlan, BundleNetworkAt128MaskDiceAgainstF32) {
  SKIP_WITHOUT_CUDA();
  DynUNet net;
  net.init(61);
  const Int3 sp{128, 128, 128};
  std::vector<float> x = random_vector(int64_t(128) * 128 * 128 * 3, 62, 0.f, 1.f);
  std::vector<float> z32;
  std::vector<uint8_t> m32;
  {
    PlanOptions o;
    o.device = Device::CUDA;
    InferencePlan p32(net, sp, o);
    p32.run(x.data());
    z32 = p32.logits_host();
    m32 = p32.mask_host();
  }
  PlanOptions o;
  o.device = Device::CUDA;
  o.precision = DType::F16;
  InferencePlan p16(net, sp, o);
  ASSERT_TRUE(p16.fused());
  p16.run(x.data());
  const std::vector<float> z16 = p16.logits_host();
  const std::vector<uint8_t> m16 = p16.mask_host();
  const double d = dice1(m16, m32), e = relative_l2(z16, z32);
  int64_t fg = 0;
  for (uint8_t v : m32) fg += v == 1;
  std::printf("[ fused 128^3 ] mask Dice %.6f vs f32 (%lld foreground voxels), logits rel. L2 %.3g\n", d,
              (long long)fg, e);
  EXPECT_GE(d, 0.999);
}
