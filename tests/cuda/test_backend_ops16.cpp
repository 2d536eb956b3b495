// The backend-op table's storage-dtype rows (STYLE.md §2; harness in backend_op_table.h): every non-convolution
// CUDA op of kernels/cuda/ops16_cuda.h, forward and backward, for f16 and bf16 storage (and f32 through the same
// dtype entry points), against the fp32 CPU reference run on the same 16-bit-rounded inputs, with the reference's
// 16-bit outputs rounded to the storage type as the kernel rounds them (round to nearest even, once).
//
// Per row: guard bands, NaN poison (every element written), a small-integer exactness pass where the op is exact,
// a random pass, determinism (two runs bitwise equal). Tolerances:
//   - data movement and single fp32 operations rounded once (leaky_relu, add, bias_add fwd, concat, argmax,
//     conversions): both sides do the same fp32 operation and the same rounding, so bit-exact (rtol 0) in both passes;
//   - double-math ops (instance norm, softmax, dice_ce) whose 16-bit outputs are rounded from fp32: the double sums
//     differ only in order (~1e-16), so the fp32 values agree to an ulp or two and the rounding to the storage type
//     can differ by one storage ulp at a rounding boundary: rtol = tol(t, K) = 2 u_t + 4 sqrt(K) u_f32 with
//     u_t = 2^-11 (f16) / 2^-8 (bf16), atol = rtol * rms(ref); NMSE ceilings 1e-6 (f16) / 3e-5 (bf16) as STYLE.md;
//   - their fp32 outputs (instance-norm mean / rstd, dgamma / dbeta, dbias, softmax probabilities) are double math
//     rounded once to fp32 on both sides: 4 u_f32, NMSE 1e-12, as the fp32 rows (checked in separate rows, so the
//     16-bit tolerance of a sibling output never loosens them).
// Without a GPU every table row skips and says why; the host-side argument checks (Ops16Checks) run everywhere.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/ops16_cuda.h"
#include "kernels/half.h"
#include "tests/cuda/backend_op_table.h"
#include "tests/testing.h"

namespace dex {
namespace {

using namespace op_table;

constexpr double kR4 = 4 * kU32;  // double math rounded once to fp32 on both sides

// The reference's outputs in storage type t, as the kernel stores them.
void round_all(DType t, std::vector<float>& v) {
  for (auto& x : v) x = round_to(t, x);
}
double nmse16(DType t) { return t == DType::F16 ? 1e-6 : t == DType::BF16 ? 3e-5 : 1e-12; }

void add_instance_norm_rows(std::vector<OpCase>& rows, DType t) {
  // N=2, C=40 (a partial 32-channel chunk), S=210; shifted inputs (mean 3) exercise the two-pass variance.
  for (bool affine : {false, true}) {
    InstanceNormParams p;
    p.N = 2; p.C = 40; p.S = 5 * 6 * 7; p.affine = affine;
    const int64_t n = p.N * p.S * p.C, nc = p.N * p.C;
    const std::string an = affine ? "affine" : "plain";
    std::vector<In> ins = {{t, n, 2.f, 4.f}};
    if (affine) ins.insert(ins.end(), {{DType::F32, p.C}, {DType::F32, p.C}});
    auto cpu = [p, t](const HostIn& in, HostIn& out) {
      instance_norm_fwd_cpu(p, in[0].data(), p.affine ? in[1].data() : nullptr, p.affine ? in[2].data() : nullptr,
                            out[0].data(), out[1].data(), out[2].data());
      round_all(t, out[0]);
      return Scalars{};
    };
    auto gpu = [p, t](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
      instance_norm_fwd_cuda(p, t, in[0], p.affine ? cin<float>(in[1]) : nullptr,
                             p.affine ? cin<float>(in[2]) : nullptr, out[0], cout_<float>(out[1]),
                             cout_<float>(out[2]), S(s));
      return Scalars{};
    };
    // y: double math, rounded to fp32 then to t. Reduction length S.
    rows.push_back({str("instance_norm_fwd/", dt(t), "/", an, "/y"), ins,
                    {{t, n}, {DType::F32, nc, false, -1, 1, -1, 1, false}, {DType::F32, nc, false, -1, 1, -1, 1, false}},
                    cpu, gpu, tol(t, double(p.S)), nmse16(t), false, 0, 41});
    rows.push_back({str("instance_norm_fwd/", dt(t), "/", an, "/stats"), ins,
                    {{t, n, false, -1, 1, -1, 1, false}, {DType::F32, nc}, {DType::F32, nc}}, cpu, gpu, kR4, 1e-12,
                    false, 0, 42});
  }
  // Backward: plain with Overwrite, affine with Accumulate (dx and the parameter gradients).
  for (bool affine : {false, true}) {
    InstanceNormParams p;
    p.N = 2; p.C = 40; p.S = 5 * 6 * 7; p.affine = affine;
    const int64_t n = p.N * p.S * p.C, nc = p.N * p.C;
    const GradMode mode = affine ? GradMode::Accumulate : GradMode::Overwrite;
    const std::string an = affine ? "affine/acc" : "plain/over";
    std::vector<In> ins = {{t, n}, {t, n}, {DType::F32, nc, -0.5f, 0.5f}, {DType::F32, nc, 0.5f, 2.f}};
    if (affine) ins.push_back({DType::F32, p.C});
    auto cpu = [p, t, mode](const HostIn& in, HostIn& out) {
      instance_norm_bwd_cpu(p, in[0].data(), in[1].data(), in[2].data(), in[3].data(),
                            p.affine ? in[4].data() : nullptr, out[0].data(), p.affine ? out[1].data() : nullptr,
                            p.affine ? out[2].data() : nullptr, mode);
      round_all(t, out[0]);
      return Scalars{};
    };
    auto gpu = [p, t, mode](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out,
                            void* s) {
      instance_norm_bwd_cuda(p, t, in[0], in[1], cin<float>(in[2]), cin<float>(in[3]),
                             p.affine ? cin<float>(in[4]) : nullptr, out[0], p.affine ? cout_<float>(out[1]) : nullptr,
                             p.affine ? cout_<float>(out[2]) : nullptr, mode, S(s));
      return Scalars{};
    };
    const bool acc = mode == GradMode::Accumulate;
    std::vector<Out> outs = {{t, n, acc}};
    if (affine) outs.insert(outs.end(), {{DType::F32, p.C, true, -1, 1, -1, 1, false},
                                         {DType::F32, p.C, true, -1, 1, -1, 1, false}});
    // dx = rstd (g - mean g - xhat mean(g xhat)): sums of S terms in double, rounded to fp32 (after the accumulate
    // add) and then to t.
    rows.push_back({str("instance_norm_bwd/", dt(t), "/", an, "/dx"), ins, outs, cpu, gpu,
                    tol(t, double(p.S) + 1), nmse16(t), false, 0, 43});
    if (affine) {
      // dgamma / dbeta: sums over N*S terms in double, accumulated into fp32.
      rows.push_back({str("instance_norm_bwd/", dt(t), "/", an, "/dparams"), ins,
                      {{t, n, true, -1, 1, -1, 1, false}, {DType::F32, p.C, true}, {DType::F32, p.C, true}}, cpu, gpu,
                      kR4, 1e-12, false, 0, 44});
    }
  }
}

void add_elementwise_rows(std::vector<OpCase>& rows, DType t) {
  const int64_t n = 3000;  // not a multiple of the block size
  rows.push_back({str("leaky_relu_fwd/", dt(t)), {{t, n}}, {{t, n}},
                  [=](const HostIn& in, HostIn& out) {
                    leaky_relu_fwd_cpu(n, 0.01f, in[0].data(), out[0].data());
                    round_all(t, out[0]);
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    leaky_relu_fwd_cuda(n, 0.01f, t, in[0], out[0], S(s));
                    return Scalars{};
                  },
                  0, 0, true, 0, 51});
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    const char* mn = acc ? "acc" : "over";
    // x in {-1, 0, 1} in the exactness pass: x == 0 takes the slope (PyTorch).
    rows.push_back({str("leaky_relu_bwd/", dt(t), "/", mn), {{t, n}, {t, n}}, {{t, n, acc}},
                    [=](const HostIn& in, HostIn& out) {
                      leaky_relu_bwd_cpu(n, 0.01f, in[0].data(), in[1].data(), out[0].data(), mode);
                      round_all(t, out[0]);
                      return Scalars{};
                    },
                    [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                      leaky_relu_bwd_cuda(n, 0.01f, t, in[0], in[1], out[0], mode, S(s));
                      return Scalars{};
                    },
                    0, 0, true, 0, 52});
  }
  // add: one fp32 add of two stored values, rounded once (the exactness pass adds small integers exactly).
  rows.push_back({str("add_fwd/", dt(t)), {{t, n}, {t, n}}, {{t, n}},
                  [=](const HostIn& in, HostIn& out) {
                    add_fwd_cpu(n, in[0].data(), in[1].data(), out[0].data());
                    round_all(t, out[0]);
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    add_fwd_cuda(n, t, in[0], in[1], out[0], S(s));
                    return Scalars{};
                  },
                  0, 0, true, 0, 53});
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    rows.push_back({str("add_bwd/", dt(t), "/", acc ? "acc" : "over"), {{t, n}}, {{t, n, acc}, {t, n, acc}},
                    [=](const HostIn& in, HostIn& out) {
                      add_bwd_cpu(n, in[0].data(), out[0].data(), out[1].data(), mode);
                      round_all(t, out[0]);
                      round_all(t, out[1]);
                      return Scalars{};
                    },
                    [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                      add_bwd_cuda(n, t, in[0], out[0], out[1], mode, S(s));
                      return Scalars{};
                    },
                    0, 0, true, 0, 54});
  }
  const int64_t vox = 700;
  const int C = 3;
  // bias_add: y (t, in place) += bias (fp32): one fp32 add, rounded once.
  rows.push_back({str("bias_add_fwd/", dt(t)), {{DType::F32, C}}, {{t, vox * C, true}},
                  [=](const HostIn& in, HostIn& out) {
                    bias_add_fwd_cpu(vox, C, in[0].data(), out[0].data());
                    round_all(t, out[0]);
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    bias_add_fwd_cuda(vox, C, t, cin<float>(in[0]), out[0], S(s));
                    return Scalars{};
                  },
                  0, 0, true, 0, 55});
  // dbias (fp32) += sum of 700 stored dy in double: exact for small integers.
  rows.push_back({str("bias_add_bwd/", dt(t)), {{t, vox * C}}, {{DType::F32, C, true}},
                  [=](const HostIn& in, HostIn& out) {
                    bias_add_bwd_cpu(vox, C, in[0].data(), out[0].data());
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    bias_add_bwd_cuda(vox, C, t, in[0], cout_<float>(out[0]), S(s));
                    return Scalars{};
                  },
                  kR4, 1e-12, true, 0, 56});
  const int Ca = 5, Cb = 3;
  rows.push_back({str("concat_fwd/", dt(t)), {{t, vox * Ca}, {t, vox * Cb}}, {{t, vox * (Ca + Cb)}},
                  [=](const HostIn& in, HostIn& out) {
                    concat_fwd_cpu(vox, Ca, Cb, in[0].data(), in[1].data(), out[0].data());
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    concat_fwd_cuda(vox, Ca, Cb, t, in[0], in[1], out[0], S(s));
                    return Scalars{};
                  },
                  0, 0, true, 0, 57});
  for (GradMode mode : {GradMode::Overwrite, GradMode::Accumulate}) {
    const bool acc = mode == GradMode::Accumulate;
    rows.push_back({str("concat_bwd/", dt(t), "/", acc ? "acc" : "over"), {{t, vox * (Ca + Cb)}},
                    {{t, vox * Ca, acc}, {t, vox * Cb, acc}},
                    [=](const HostIn& in, HostIn& out) {
                      concat_bwd_cpu(vox, Ca, Cb, in[0].data(), out[0].data(), out[1].data(), mode);
                      round_all(t, out[0]);
                      round_all(t, out[1]);
                      return Scalars{};
                    },
                    [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                      concat_bwd_cuda(vox, Ca, Cb, t, in[0], out[0], out[1], mode, S(s));
                      return Scalars{};
                    },
                    0, 0, true, 0, 58});
  }
  // softmax: stored logits in, fp32 probabilities out (double math rounded once, as the reference).
  rows.push_back({str("softmax_fwd/", dt(t)), {{t, vox * C, -4.f, 4.f}}, {{DType::F32, vox * C}},
                  [=](const HostIn& in, HostIn& out) {
                    softmax_fwd_cpu(vox, C, in[0].data(), out[0].data());
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    softmax_fwd_cuda(vox, C, t, in[0], cout_<float>(out[0]), S(s));
                    return Scalars{};
                  },
                  kR4, 1e-12, false, 0, 59});
  // softmax_bwd: y fp32, dy and dx stored; dx in double over C terms, rounded to fp32 then to t.
  rows.push_back({str("softmax_bwd/", dt(t)), {{DType::F32, vox * C, 0.f, 1.f}, {t, vox * C}}, {{t, vox * C}},
                  [=](const HostIn& in, HostIn& out) {
                    softmax_bwd_cpu(vox, C, in[0].data(), in[1].data(), out[0].data());
                    round_all(t, out[0]);
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    softmax_bwd_cuda(vox, C, t, cin<float>(in[0]), in[1], out[0], S(s));
                    return Scalars{};
                  },
                  tol(t, C), nmse16(t), false, 0, 60});
  // argmax over stored logits: exact. Ties (many in the {-1,0,1} pass, and more in bf16's random pass than in
  // fp32's) go to the lowest index.
  rows.push_back({str("argmax/", dt(t)), {{t, vox * C}}, {{DType::U8, vox}},
                  [=](const HostIn& in, HostIn& out) {
                    std::vector<uint8_t> o(vox);
                    argmax_cpu(vox, C, in[0].data(), o.data());
                    for (int64_t i = 0; i < vox; ++i) out[0][i] = o[i];
                    return Scalars{};
                  },
                  [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                    argmax_cuda(vox, C, t, in[0], cout_<uint8_t>(out[0]), S(s));
                    return Scalars{};
                  },
                  0, 0, true, 0, 61});
  {
    DiceCEParams p;
    p.N = 2; p.C = 2; p.S = 900;
    const int64_t nz = p.N * p.S * p.C;
    // Loss (double on both sides, same stored logits): 1e-12. dlogits: double math rounded to fp32 then to t; the
    // loss-scale-like grad_scale 256 keeps them well inside the normal fp16 range.
    rows.push_back({str("dice_ce_fwd_bwd/", dt(t)), {{t, nz, -3.f, 3.f}, {DType::U8, p.N * p.S, 0, 0, 0, 1}},
                    {{t, nz}},
                    [p, t](const HostIn& in, HostIn& out) {
                      std::vector<uint8_t> tg(in[1].begin(), in[1].end());
                      auto r = dice_ce_fwd_bwd_cpu(p, in[0].data(), tg.data(), out[0].data(), 256.f);
                      round_all(t, out[0]);
                      return Scalars{r.loss, r.dice, r.ce};
                    },
                    [p, t](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                      auto r = dice_ce_fwd_bwd_cuda(p, t, in[0], cin<uint8_t>(in[1]), out[0], 256.f, S(s));
                      return Scalars{r.loss, r.dice, r.ce};
                    },
                    tol(t, double(p.S)), nmse16(t), false, 1e-12, 62});
  }
}

// f16 <-> bf16 through fp32 (exact widening, one rounding): the composition of the CPU conversions, bit-exact.
// Ranges: wide (bf16 -> f16 overflows to inf beyond 65504; f16 inputs near 65504 round to bf16), integers up to
// 3000 in the exactness pass (above 2048 / 256 they round), and tiny values (f16 subnormals).
void add_convert_rows(std::vector<OpCase>& rows) {
  const int64_t n = 3000;
  for (DType src : {DType::F16, DType::BF16}) {
    const DType dst = src == DType::F16 ? DType::BF16 : DType::F16;
    const bool to_bf = dst == DType::BF16;
    struct Range { const char* name; float lo, hi; };
    for (const Range r : {Range{"wide", -1e5f, 1e5f}, Range{"tiny", -1e-4f, 1e-4f}}) {
      rows.push_back({str("convert_", dt(src), "_to_", dt(dst), "/", r.name), {{src, n, r.lo, r.hi, -3000, 3000}},
                      {{dst, n}},
                      [=](const HostIn& in, HostIn& out) {
                        // in[0] holds src values widened to fp32 (exactly); the CPU fp32 -> dst conversion rounds once.
                        std::vector<uint16_t> o(n);
                        if (to_bf) convert_f32_to_bf16_cpu(n, in[0].data(), o.data());
                        else convert_f32_to_f16_cpu(n, in[0].data(), o.data());
                        for (int64_t i = 0; i < n; ++i) out[0][i] = to_bf ? bf16_bits_to_f32(o[i]) : f16_bits_to_f32(o[i]);
                        return Scalars{};
                      },
                      [=](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void* s) {
                        if (to_bf) convert_f16_to_bf16_cuda(n, cin<uint16_t>(in[0]), cout_<uint16_t>(out[0]), S(s));
                        else convert_bf16_to_f16_cuda(n, cin<uint16_t>(in[0]), cout_<uint16_t>(out[0]), S(s));
                        return Scalars{};
                      },
                      0, 0, true, 0, 63});
    }
  }
}

std::vector<OpCase> all_rows() {
  std::vector<OpCase> rows;
  // F32 through the dtype entry points runs the fp32 launchers' kernels (a check of the dispatch); F16 and BF16 are
  // the storage rows proper.
  for (DType t : {DType::F16, DType::BF16, DType::F32}) {
    add_instance_norm_rows(rows, t);
    add_elementwise_rows(rows, t);
  }
  add_convert_rows(rows);
  for (auto& r : rows) r.name = str(r.name, "/dtype");  // distinct from the fp32 table's row names
  return rows;
}

const std::vector<OpCase>& table() {
  static const std::vector<OpCase> rows = all_rows();
  return rows;
}

class BackendOps16 : public ::testing::TestWithParam<size_t> {};

TEST_P(BackendOps16, MatchesCpuReference) {
  run_cuda_row(table()[GetParam()]);
}

INSTANTIATE_TEST_SUITE_P(Table16, BackendOps16, ::testing::Range<size_t>(0, table().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return param_name(table()[info.param].name); });

// Harness self-check, runs everywhere: every 16-bit row with its CUDA op replaced by a host emulation of a 16-bit
// kernel (widen the stored inputs and outputs from the buffers' bytes, run the fp32 reference, round to the storage
// type, store the bytes), on the CPU backend through the same guard bands, poison, passes and determinism check. It
// shows the rows' byte plumbing (16-bit inputs, presets for accumulation, the reference's rounding, fp32 / u8
// outputs beside 16-bit ones) accepts an implementation that rounds as the kernels do: a row that fails here is a
// broken row, not a broken kernel.
OpCase emulated(const OpCase& c) {
  OpCase e = c;
  e.cuda = [c](const Backend&, const std::vector<const void*>& in, const std::vector<void*>& out, void*) {
    HostIn hin, hout;
    for (size_t i = 0; i < c.ins.size(); ++i)
      hin.push_back(from_bytes(c.ins[i].type, static_cast<const uint8_t*>(in[i]), c.ins[i].n));
    for (size_t o = 0; o < c.outs.size(); ++o)
      hout.push_back(from_bytes(c.outs[o].type, static_cast<const uint8_t*>(out[o]), c.outs[o].n));
    const Scalars sc = c.cpu(hin, hout);
    for (size_t o = 0; o < c.outs.size(); ++o) {
      const std::vector<uint8_t> bytes = to_bytes(c.outs[o].type, hout[o]);
      std::memcpy(out[o], bytes.data(), bytes.size());
    }
    return sc;
  };
  return e;
}

class Ops16HarnessSelfCheck : public ::testing::TestWithParam<size_t> {};

TEST_P(Ops16HarnessSelfCheck, EmulationMatchesCpuReference) {
  const OpCase c = emulated(table()[GetParam()]);
  if (c.exact_pass) run_pass(backend(Device::CPU), c, true);
  run_pass(backend(Device::CPU), c, false);
}

INSTANTIATE_TEST_SUITE_P(Cpu16, Ops16HarnessSelfCheck, ::testing::Range<size_t>(0, table().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) { return param_name(table()[info.param].name); });

// Host-side checks that run before any CUDA call, so they run everywhere: a dtype without a storage type, bad sizes
// and missing pointers throw dex::Error naming the entry point; empty problems return without launching anything.
TEST(Ops16Checks, RejectsBadArgumentsOnTheHost) {
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "expected a dex::Error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  int dummy = 0;
  void* p = &dummy;  // never dereferenced: every case throws or returns before a launch
  expect_error([&] { leaky_relu_fwd_cuda(4, 0.01f, DType::U8, p, p); }, "leaky_relu_fwd_cuda: storage dtype");
  expect_error([&] { add_fwd_cuda(4, DType::I32, p, p, p); }, "got i32");
  expect_error([&] { softmax_fwd_cuda(4, 2, DType::U8, p, static_cast<float*>(p)); }, "softmax_fwd_cuda");
  expect_error([&] { leaky_relu_fwd_cuda(-1, 0.01f, DType::F16, p, p); }, "negative element count");
  expect_error([&] { add_fwd_cuda(4, DType::BF16, p, nullptr, p); }, "add_fwd_cuda: a, b and y must not be null");
  expect_error([&] { concat_fwd_cuda(4, -1, 2, DType::F16, p, p, p); }, "concat_fwd_cuda: bad sizes");
  expect_error([&] { argmax_cuda(4, 300, DType::F16, p, static_cast<uint8_t*>(p)); }, "1 <= C <= 256");
  expect_error([&] { bias_add_bwd_cuda(4, 2, DType::F16, nullptr, static_cast<float*>(p)); }, "must not be null");
  expect_error([&] { convert_f16_to_bf16_cuda(4, nullptr, static_cast<uint16_t*>(p)); }, "convert_f16_to_bf16_cuda");
  InstanceNormParams ip;
  ip.N = 1; ip.C = 2; ip.S = 0;
  expect_error([&] { instance_norm_fwd_cuda(ip, DType::F16, p, nullptr, nullptr, p, nullptr, nullptr); },
               "sizes must be positive");
  ip.S = 8; ip.affine = true;
  float f = 0;
  expect_error([&] { instance_norm_fwd_cuda(ip, DType::BF16, p, nullptr, nullptr, p, &f, &f); }, "needs gamma and beta");
  expect_error([&] { instance_norm_bwd_cuda(ip, DType::F16, p, p, &f, &f, nullptr, p, &f, &f); }, "needs gamma");
  DiceCEParams dp;
  dp.N = 1; dp.C = 40; dp.S = 8;
  expect_error([&] { dice_ce_fwd_bwd_cuda(dp, DType::F16, p, static_cast<uint8_t*>(p), p); }, "C must be in [1, 16]");
  // Empty problems: no launch, no error (even with null pointers).
  EXPECT_NO_THROW(leaky_relu_fwd_cuda(0, 0.01f, DType::F16, nullptr, nullptr));
  EXPECT_NO_THROW(add_bwd_cuda(0, DType::BF16, nullptr, nullptr, nullptr));
  EXPECT_NO_THROW(concat_bwd_cuda(0, 2, 3, DType::F16, nullptr, nullptr, nullptr));
  EXPECT_NO_THROW(convert_bf16_to_f16_cuda(0, nullptr, nullptr));
}

}  // namespace
}  // namespace dex
