// Fused fp16 kernels of the InferencePlan's CUDA f16 executor (issue 8, KERNELS.md §5); kernels in
// infer/plan_conv_fused.cu. This header holds their index math and arithmetic as plain host+device functions (tested
// on the CPU by tests/infer/test_plan_fused_layout.cpp) and the host launchers' declarations (no CUDA headers).
//
// The fused conv (fp16 NDHWC activations, fp16 KTRSC weights, fp32 accumulation):
//   - prologue: each loaded input element of an operand with statistics becomes fp16((x - mean[c]) * rstd[c]
//     [* gamma + beta] [LeakyReLU]); elements outside the volume stay exactly 0 (the conv pads the NORMALISED
//     tensor). fp16 rounding of the normalised value: the operand equals, bit for bit, what the unfused path stores.
//   - two sources: channels [0, Ca) from operand 0, [Ca, Ca + Cb) from operand 1 (the decoder's concat, never copied).
//   - epilogue: y in fp16, and the instance-norm statistics of y: per tile (128 output voxels of one sample, never two)
//     and channel, (count, mean, M2) in fp32 (P threads per column, each two passes over its rows, the P parts
//     combined in order), into a workspace; then
//     a finalize kernel combines a channel's tiles in a fixed order (256 contiguous ranges in order, then a fixed
//     pairwise tree) with Chan's formula in double into mean and rstd = 1 / sqrt(M2 / n + eps). No atomics.
//     STATISTICS ARE OF THE STORED (fp16-rounded) VALUES: the consumer normalises exactly the tensor the statistics
//     describe, the unfused path (statistics of the stored tensor) differs only in summation order, and the CPU
//     oracle rounds to fp16 before its double sums.
//   - the residual 1x1 projection: the 1x1 stride-s pad-0 conv reads, for output voxel o, input voxel o*s: exactly
//     what tap (KD/2, KH/2, KW/2) of the odd-kernel stride-s pad-k/2 conv reads. On that tap's k-steps the CTA also
//     multiplies the A tile by the projection's weights into a second accumulator, and writes its output + stats.
// Variants: Direct (one thread per output voxel x 8 channels, any C/K: the readable oracle; input_block.conv1's
// Cin = 3), Mma (v2-shaped implicit GEMM: mma.sync m16n8k16, 3-stage cp.async, swizzled smem, conv3d_v2_layout.h
// maps; needs Ca, Cb, K multiples of 32), Best = Mma where it applies.
// Also: the transposed conv (kernel == stride, one GEMM) with the prologue on its input (Mma only), the residual add
// lrelu(norm2(h) + norm3(r)) (elementwise), and the head: norm + LeakyReLU, 1x1 conv + bias -> fp32 logits, softmax,
// argmax in one pass.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common.h"
#include "kernels/conv3d.h"
#include "kernels/conv_transpose3d.h"
#include "kernels/half.h"

namespace dex::fused {

constexpr int kTileRows = 128;          // output voxels per tile (= v2::kBM); a tile lies inside one sample
constexpr int kDirectGroup = 8;         // output channels per block of the Direct kernel
constexpr int kFinalizeThreads = 256;   // ranges of tiles combined in order, then a pairwise tree
constexpr int kHeadMaxK = 8;            // the head's output channels (DeepEdit: 2)
constexpr int kDirectParts = kTileRows / kDirectGroup;  // Direct: threads per column in the tile statistics

// ---- arithmetic with explicit rounding (no multiply-add contraction: host and device give the same bits) -------
DEX_HD inline float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DEX_HD inline float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DEX_HD inline float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// The prologue transform (and the unfused normalise kernel's): (x - mean) * rstd [* gamma + beta] [LeakyReLU], fp32.
DEX_HD inline float normalise_value(float x, float mean, float rstd, bool affine, float gamma, float beta, bool lrelu,
                                    float slope) {
  float v = f_mul(f_sub(x, mean), rstd);
  if (affine) v = f_add(f_mul(v, gamma), beta);
  if (lrelu) v = v > 0.f ? v : f_mul(v, slope);
  return v;
}
DEX_HD inline float lrelu_value(float v, float slope) { return v > 0.f ? v : f_mul(v, slope); }

// ---- two sources: channel c of the virtual concat [a | b] ------------------------------------------------------
// Returns the operand (0: a, 1: b) and sets *cs to the channel within it.
DEX_HD inline int source_of(int c, int Ca, int* cs) {
  if (c < Ca) {
    *cs = c;
    return 0;
  }
  *cs = c - Ca;
  return 1;
}

// ---- tiles: sample n's S rows (output voxels; input voxels for the transposed conv) in tiles of 128 -----------
DEX_HD inline int64_t tiles_per_sample(int64_t S) { return (S + kTileRows - 1) / kTileRows; }
// Rows of tile t that exist (a prefix of the tile: rows [0, tile_rows) hold voxels t*128 + r < S).
DEX_HD inline int tile_rows(int64_t S, int64_t t) {
  const int64_t r = S - t * kTileRows;
  return int(r < kTileRows ? r : kTileRows);
}
// Global row (n*S + voxel within the sample) of row r of tile t of sample n.
DEX_HD inline int64_t tile_global_row(int n, int64_t S, int64_t t, int r) { return int64_t(n) * S + t * kTileRows + r; }

// Output voxel s (within a sample, NDHWC order) -> first input coordinate of tap (0,0,0), per axis.
DEX_HD inline void voxel_origin(int64_t s, int OH, int OW, const int* stride, const int* pad, int* z, int* y, int* x) {
  const int ow = int(s % OW);
  s /= OW;
  const int oh = int(s % OH);
  const int od = int(s / OH);
  *z = od * stride[0] - pad[0];
  *y = oh * stride[1] - pad[1];
  *x = ow * stride[2] - pad[2];
}

// Global input voxel ((n*D + iz)*H + iy)*W + ix that tap `tap` (KD x KH x KW, tap-major) reads from origin (z0, y0, x0),
// or -1 when it lies outside the volume (zero padding: the prologue leaves such elements 0).
DEX_HD inline int64_t tap_voxel(int n, int z0, int y0, int x0, int tap, int KH, int KW, const int* dil, int D, int H,
                                int W) {
  const int kd = tap / (KH * KW), kh = (tap / KW) % KH, kw = tap % KW;
  const int iz = z0 + kd * dil[0], iy = y0 + kh * dil[1], ix = x0 + kw * dil[2];
  if (iz < 0 || iz >= D || iy < 0 || iy >= H || ix < 0 || ix >= W) return -1;
  return ((int64_t(n) * D + iz) * H + iy) * W + ix;
}

// ---- the projection riding on conv1's centre tap ------------------------------------------------------------------
DEX_HD inline int centre_tap(int KD, int KH, int KW) { return ((KD / 2) * KH + KH / 2) * KW + KW / 2; }

// True when proj (1x1x1, pad 0) reads, for every output voxel, exactly the input voxel that conv's centre tap reads:
// odd kernel, pad = k/2, dilation 1, the same stride, input, batch and output channels, and the same output extent.
inline bool projection_rides_on(const Conv3dParams& conv, const Conv3dParams& proj, std::string* why = nullptr) {
  auto no = [&](const char* s) {
    if (why) *why = s;
    return false;
  };
  if (proj.KD != 1 || proj.KH != 1 || proj.KW != 1) return no("the projection is not 1x1x1");
  const int k[3] = {conv.KD, conv.KH, conv.KW};
  for (int a = 0; a < 3; ++a) {
    if (k[a] % 2 != 1) return no("conv1's kernel is not odd");
    if (conv.pad[a] != k[a] / 2 || conv.dil[a] != 1) return no("conv1's padding is not k/2 or it is dilated");
    if (proj.pad[a] != 0 || proj.dil[a] != 1) return no("the projection is padded or dilated");
    if (proj.stride[a] != conv.stride[a]) return no("the projection's stride differs from conv1's");
  }
  if (proj.N != conv.N || proj.C != conv.C || proj.K != conv.K || proj.D != conv.D || proj.H != conv.H ||
      proj.W != conv.W)
    return no("the projection's input or output channels differ from conv1's");
  if (proj.OD() != conv.OD() || proj.OH() != conv.OH() || proj.OW() != conv.OW())
    return no("the projection's output extent differs from conv1's");
  return true;
}

// ---- statistics ----------------------------------------------------------------------------------------------------
// Workspace of one conv output's tile partials: three planes (count, mean, M2) of [N][K][T] floats.
DEX_HD inline int64_t partial_index(int q, int n, int k, int64_t t, int N, int K, int64_t T) {
  return ((int64_t(q) * N + n) * K + k) * T + t;
}
inline size_t partial_bytes(int N, int K, int64_t S) {
  return size_t(3) * size_t(N) * size_t(K) * size_t(tiles_per_sample(S)) * sizeof(float);
}

// (mean, M2) of count values v(0..count-1), fp32, two passes in row order (count >= 1).
template <class Get>
DEX_HD inline void tile_moments(Get v, int count, float* mean, float* m2) {
  float s = 0.f;
  for (int r = 0; r < count; ++r) s = f_add(s, v(r));
  const float mu = s / float(count);
  float q = 0.f;
  for (int r = 0; r < count; ++r) {
    const float d = f_sub(v(r), mu);
    q = f_add(q, f_mul(d, d));
  }
  *mean = mu;
  *m2 = q;
}

// Chan's combination: (n, mean, m2) += (nb, mb, m2b); an empty part changes nothing.
DEX_HD inline void chan_combine(double& n, double& mean, double& m2, double nb, double mb, double m2b) {
  if (nb == 0) return;
  const double tot = n + nb, d = mb - mean;
  mean += d * nb / tot;
  m2 += m2b + d * d * n * nb / tot;
  n = tot;
}

// A tile's column is reduced by P threads at once (Mma: 128 / BN, Direct: 16): part p holds rows
// [part_begin(p), part_begin(p + 1)), reduced by tile_moments; the parts (count, mean, M2), stored at parts[j * stride
// + 0..2], are combined in part order (Chan, double) into the tile's fp32 (mean, M2).
DEX_HD inline int part_begin(int p, int P, int count) { return count * p / P; }
DEX_HD inline void combine_parts(const float* parts, int stride, int P, float* mean, float* m2) {
  double n = 0, mu = 0, q = 0;
  for (int j = 0; j < P; ++j) chan_combine(n, mu, q, parts[j * stride], parts[j * stride + 1], parts[j * stride + 2]);
  *mean = float(mu);
  *m2 = float(q);
}
// The same, serially (the CPU oracle of a kernel's tile statistics with P threads per column; P <= 64).
template <class Get>
inline void tile_moments_split(Get v, int count, int P, float* mean, float* m2) {
  float parts[3 * 64];
  for (int p = 0; p < P; ++p) {
    const int b = part_begin(p, P, count), e = part_begin(p + 1, P, count);
    parts[3 * p] = float(e - b);
    parts[3 * p + 1] = parts[3 * p + 2] = 0.f;
    if (e > b) tile_moments([&](int r) { return v(b + r); }, e - b, &parts[3 * p + 1], &parts[3 * p + 2]);
  }
  combine_parts(parts, 3, P, mean, m2);
}

// Thread t of the finalize block combines tiles [range_begin(t), range_begin(t + 1)) in order.
DEX_HD inline int64_t range_begin(int t, int64_t T) { return T * t / kFinalizeThreads; }

DEX_HD inline float rstd_of(double n, double m2, float eps) { return float(1.0 / sqrt(m2 / n + double(eps))); }

// The finalize kernel's combination, serially, in its exact order (the CPU oracle; the kernel runs the same steps
// in parallel): per thread its range in order, then the tree (stride 128, 64, ..., 1: slot t absorbs t + stride).
inline void combine_partials(const float* cnt, const float* mean, const float* m2, int64_t T, double* n_out,
                             double* mean_out, double* m2_out) {
  double n[kFinalizeThreads], mu[kFinalizeThreads], q[kFinalizeThreads];
  for (int t = 0; t < kFinalizeThreads; ++t) {
    n[t] = mu[t] = q[t] = 0;
    for (int64_t i = range_begin(t, T); i < range_begin(t + 1, T); ++i)
      chan_combine(n[t], mu[t], q[t], cnt[i], mean[i], m2[i]);
  }
  for (int s = kFinalizeThreads / 2; s > 0; s >>= 1)
    for (int t = 0; t < s; ++t) chan_combine(n[t], mu[t], q[t], n[t + s], mu[t + s], q[t + s]);
  *n_out = n[0];
  *mean_out = mu[0];
  *m2_out = q[0];
}

}  // namespace dex::fused

namespace dex::plan_fused {

// One input operand of a fused kernel: fp16 NDHWC, read as stored (mean == nullptr) or normalised in the prologue
// with per-(sample, channel) mean/rstd [N][C] and optional per-channel gamma/beta, then LeakyReLU if lrelu.
struct Operand {
  const void* x = nullptr;
  int channels = 0;
  const float* mean = nullptr;
  const float* rstd = nullptr;
  const float* gamma = nullptr;
  const float* beta = nullptr;
  bool lrelu = false;
};

// Where a fused conv writes the statistics of one output: mean/rstd [N][K] (nullptr: no statistics) and a
// workspace of partial_bytes(N, K, output voxels per sample) bytes for the tile partials.
struct StatsOut {
  float* mean = nullptr;
  float* rstd = nullptr;
  float eps = 1e-5f;
  void* partials = nullptr;
};

struct ConvJob {
  Conv3dParams conv;       // C = in[0].channels + in[1].channels
  Operand in[2];
  int num_in = 1;
  const void* w = nullptr; // fp16 [K][taps][C]
  void* y = nullptr;       // fp16 NDHWC [N][OD][OH][OW][K]
  StatsOut stats;
  // The residual 1x1 projection on conv1's input read (proj_w == nullptr: none); needs num_in == 1.
  Conv3dParams proj;
  const void* proj_w = nullptr;  // fp16 [K][1][C]
  void* proj_y = nullptr;
  StatsOut proj_stats;
  float slope = 0.01f;     // LeakyReLU of the operands that ask for it
};

enum class Variant { Best, Direct, Mma };
const char* variant_name(Variant v);

bool conv_supports(const ConvJob& j, Variant v, std::string* why = nullptr);
void conv(const ConvJob& j, Variant v, void* stream);

// Transposed conv with kernel == stride (one GEMM) whose input is an Operand (the prologue), fp16 output. Mma only.
bool conv_transpose_supports(const ConvTranspose3dParams& p, const Operand& in, std::string* why = nullptr);
void conv_transpose(const ConvTranspose3dParams& p, const Operand& in, const void* w, void* y, float slope,
                    void* stream);

// y = [lrelu](h' + r') elementwise over N samples of S voxels x C channels, h' and r' each the operand's
// (possibly normalised, fp16-rounded) value; y may be h.
void residual(int N, int64_t S, int C, const Operand& h, const Operand& r, void* y, bool lrelu, float slope,
              void* stream);

// The head over N samples of S voxels: x' = the operand's normalised (+ LeakyReLU) fp16-rounded value, logits
// z[v][k] = sum_c x'[v][c] * w[k][c] (fp32, channel order) + bias[k], softmax (double, as softmax_fwd) and argmax
// (ties to the lowest channel) in one pass. K <= kHeadMaxK.
void head(int N, int64_t S, const Operand& x, int K, const float* w, const float* bias, float* logits, float* probs,
          uint8_t* mask, float slope, void* stream);

}  // namespace dex::plan_fused
