// Fused fp16 kernels of the InferencePlan's CUDA f16 executor (infer/plan_conv_fused.h says what each fuses and why;
// its index math and arithmetic are the header's host+device functions, tested on the CPU).
//   conv_fused_kernel_direct  Direct: one thread per output voxel (a tile row) x 8 output channels, taps then
//                             channels in order, fp32 accumulation; any C, K (weights staged in smem when taps x C
//                             <= 512). The oracle, and input_block.conv1.
//   conv_fused_kernel_mma     Mma: conv3d.cu's v2 (CTA 128 x BN x 32, 4 warps, mma.sync m16n8k16, 3-stage cp.async,
//                             conv3d_v2_layout.h's swizzle and fragment maps) plus: a tile never straddles two samples
//                             (grid z = sample), the k-step picks its source by channel range, the prologue transforms
//                             the thread's own landed chunks in smem between its cp.async wait and the stage barrier
//                             (skipping zero-filled padding), the centre tap's k-steps also feed the projection's
//                             accumulator, and the epilogue stages the rounded tile in smem for the per-tile statistics.
//                             kTrans: the transposed conv (kernel == stride) as one GEMM with a scattering epilogue.
//   stats_finalize_kernel     one block per (channel, sample): 256 ranges of tiles in order, then a fixed tree.
//   residual_kernel, head_kernel  elementwise / per voxel.
// Deterministic throughout: fixed summation orders, no atomics.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "infer/plan_conv_fused.h"
#include "kernels/cuda/conv3d_v2_layout.h"
#include "kernels/cuda/conv_common.cuh"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/mma_sync.cuh"
#include "kernels/cuda/v2_fragments.cuh"

namespace dex {
namespace plan_fused {

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::Best: return "best";
    case Variant::Direct: return "direct";
    case Variant::Mma: return "mma";
  }
  return "?";
}

namespace {

using fused::kTileRows;
using v2::kBK;
using v2::kBM;
using v2::kStages;
constexpr int kThreads = v2::kThreads;
static_assert(kBM == kTileRows, "the Mma CTA tile is one statistics tile");

// Operand as the kernels see it. Kernels take their FusedArgs as __grid_constant__: operands are picked by a run-time
// index without a local copy of the struct.
struct Src {
  const uint16_t* x;
  int C;
  const float* mean;  // nullptr: stored
  const float* rstd;
  const float* gamma;  // nullptr: no affine
  const float* beta;
  int lrelu;
};

struct StatsArgs {
  float* part;  // nullptr: none
};

struct FusedArgs {
  ConvArgs g;          // geometry; C = src[0].C + src[1].C; kTrans: the transposed conv's (OD.. = output extent)
  Src src[2];
  const uint16_t* w;
  uint16_t* y;
  StatsArgs st;
  const uint16_t* pw;  // projection weights [K][C] (kProj)
  uint16_t* py;
  StatsArgs pst;
  int64_t S;           // rows per sample (output voxels; kTrans: input voxels)
  int64_t T;           // tiles per sample
  float slope;
};

Src make_src(const Operand& o) {
  return Src{static_cast<const uint16_t*>(o.x), o.channels, o.mean, o.rstd, o.gamma, o.beta, o.lrelu ? 1 : 0};
}

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t f2h(float v) { return __half_as_ushort(__float2half_rn(v)); }

// The operand's value of element x (stored) of sample n, channel c: as stored, or normalised and rounded to fp16.
__device__ __forceinline__ float operand_value(const Src& s, int n, int c, float x, float slope) {
  if (!s.mean) return x;
  const int i = n * s.C + c;
  const bool affine = s.gamma != nullptr;
  return h2f(f2h(fused::normalise_value(x, s.mean[i], s.rstd[i], affine, affine ? s.gamma[c] : 0.f,
                                        affine ? s.beta[c] : 0.f, s.lrelu != 0, slope)));
}

// Per-tile statistics of the first `count` rows of a [rows][ld] fp16 smem tile, columns [0, ncols): all
// kThreads threads, P = threads / ncols per column (thread tid: column tid % ncols, part tid / ncols), each part two
// passes over its rows, the parts combined in order by part 0 (fused::combine_parts) -> partial planes at channel
// k0 + column. scratch: 3 * threads floats of smem. Called by every thread of the block (barriers inside).
__device__ __forceinline__ void tile_partials(const StatsArgs& st, const uint16_t* tile, int ld, int ncols, int count,
                                              float* scratch, int n, int k0, int K, int N, int64_t T, int64_t t) {
  const int tid = threadIdx.x, P = blockDim.x / ncols, col = tid % ncols, p = tid / ncols;
  const int b = fused::part_begin(p, P, count), e = fused::part_begin(p + 1, P, count);
  float mu = 0.f, m2 = 0.f;
  if (e > b) fused::tile_moments([&](int r) { return h2f(tile[(b + r) * ld + col]); }, e - b, &mu, &m2);
  scratch[3 * tid] = float(e - b);
  scratch[3 * tid + 1] = mu;
  scratch[3 * tid + 2] = m2;
  __syncthreads();
  if (p == 0 && k0 + col < K) {
    fused::combine_parts(scratch + 3 * col, 3 * ncols, P, &mu, &m2);
    st.part[fused::partial_index(0, n, k0 + col, t, N, K, T)] = float(count);
    st.part[fused::partial_index(1, n, k0 + col, t, N, K, T)] = mu;
    st.part[fused::partial_index(2, n, k0 + col, t, N, K, T)] = m2;
  }
  __syncthreads();  // scratch and the tile are read before anyone overwrites them
}

// ==== Direct ========================================================================================================
// Block = tile t (blockIdx.x) of sample n (blockIdx.z) x channels [8 blockIdx.y, +8); thread = tile row.
template <bool kProj>
__global__ void __launch_bounds__(kTileRows) conv_fused_kernel_direct(const __grid_constant__ FusedArgs a) {
  constexpr int G = fused::kDirectGroup;
  __shared__ uint16_t sv[kTileRows][G];
  __shared__ float scratch[3 * kTileRows];
  // Small C (input_block.conv1: 27 taps x 3 channels): the block's weights in smem as fp32, [tap * C + c][8 channels]
  // (and the projection's [c][8]), read as two float4 per (tap, c) instead of 8 global loads; same values, same order.
  constexpr int kStaged = 4096;
  __shared__ __align__(16) float sw[kStaged];
  __shared__ __align__(16) float spw[kStaged / 8];
  static_assert(kTileRows / G == fused::kDirectParts, "Direct: threads per statistics column");
  const int row = threadIdx.x, n = blockIdx.z, k0 = blockIdx.y * G;
  const int64_t t = blockIdx.x;
  const ConvArgs& g = a.g;
  const int count = fused::tile_rows(a.S, t);
  const bool valid = row < count;
  const int centre = kProj ? fused::centre_tap(g.KD, g.KH, g.KW) : -1;
  const bool staged = int64_t(g.taps) * g.C * G <= kStaged;  // uniform over the block
  if (staged) {
    for (int i = row; i < g.taps * g.C * G; i += kTileRows) {
      const int j = i % G, tc = i / G;  // tc = tap * C + c: w[k][tap][c] = w[k * taps * C + tc]
      sw[i] = k0 + j < g.K ? h2f(a.w[int64_t(k0 + j) * g.taps * g.C + tc]) : 0.f;
    }
    if (kProj && g.C * G <= kStaged / 8)
      for (int i = row; i < g.C * G; i += kTileRows) {
        const int j = i % G, c = i / G;
        spw[i] = k0 + j < g.K ? h2f(a.pw[int64_t(k0 + j) * g.C + c]) : 0.f;
      }
  }
  const bool pstaged = staged && g.C * G <= kStaged / 8;
  __syncthreads();
  float acc[G], pacc[G];
#pragma unroll
  for (int j = 0; j < G; ++j) acc[j] = pacc[j] = 0.f;
  if (valid) {
    const int stride[3] = {g.s0, g.s1, g.s2}, pad[3] = {g.p0, g.p1, g.p2};
    int z0, y0, x0;
    fused::voxel_origin(t * kTileRows + row, g.OH, g.OW, stride, pad, &z0, &y0, &x0);
    for (int kd = 0; kd < g.KD; ++kd) {
      const int iz = z0 + kd * g.d0;
      if (iz < 0 || iz >= g.D) continue;
      for (int kh = 0; kh < g.KH; ++kh) {
        const int iy = y0 + kh * g.d1;
        if (iy < 0 || iy >= g.H) continue;
        for (int kw = 0; kw < g.KW; ++kw) {
          const int ix = x0 + kw * g.d2;
          if (ix < 0 || ix >= g.W) continue;  // padding: the normalised tensor's zeros contribute nothing
          const int tap = (kd * g.KH + kh) * g.KW + kw;
          const int64_t v = ((int64_t(n) * g.D + iz) * g.H + iy) * g.W + ix;
          for (int c = 0; c < g.C; ++c) {
            int cs;
            const Src& s = a.src[fused::source_of(c, a.src[0].C, &cs)];
            const float xv = operand_value(s, n, cs, h2f(s.x[v * s.C + cs]), a.slope);
            if (staged) {
              const float4* wv = reinterpret_cast<const float4*>(&sw[(tap * g.C + c) * G]);
              const float4 w0 = wv[0], w1 = wv[1];
              const float wj[G] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
              for (int j = 0; j < G; ++j) acc[j] = fmaf(xv, wj[j], acc[j]);  // channels >= K: zero weights, unused
            } else {
#pragma unroll
              for (int j = 0; j < G; ++j)
                if (k0 + j < g.K) acc[j] = fmaf(xv, h2f(a.w[(int64_t(k0 + j) * g.taps + tap) * g.C + c]), acc[j]);
            }
            if (kProj && tap == centre) {
              if (pstaged) {
                const float4* pv = reinterpret_cast<const float4*>(&spw[c * G]);
                const float4 p0 = pv[0], p1 = pv[1];
                const float pj[G] = {p0.x, p0.y, p0.z, p0.w, p1.x, p1.y, p1.z, p1.w};
#pragma unroll
                for (int j = 0; j < G; ++j) pacc[j] = fmaf(xv, pj[j], pacc[j]);
              } else {
#pragma unroll
                for (int j = 0; j < G; ++j)
                  if (k0 + j < g.K) pacc[j] = fmaf(xv, h2f(a.pw[int64_t(k0 + j) * g.C + c]), pacc[j]);
              }
            }
          }
        }
      }
    }
  }
  const int64_t grow = fused::tile_global_row(n, a.S, t, row);
  auto emit = [&](const float (&ac)[G], uint16_t* y, const StatsArgs& st) {
    if (valid)
#pragma unroll
      for (int j = 0; j < G; ++j)
        if (k0 + j < g.K) {
          const uint16_t h = f2h(ac[j]);
          y[grow * g.K + k0 + j] = h;
          sv[row][j] = h;
        }
    if (st.part) {
      __syncthreads();
      tile_partials(st, &sv[0][0], G, G, count, scratch, n, k0, g.K, g.N, a.T, t);
    }
  };
  emit(acc, a.y, a.st);
  if (kProj) emit(pacc, a.py, a.pst);
}

// ==== Mma ===========================================================================================================
using namespace mma_sync;  // cp.async, ldmatrix, mma.sync m16n8k16 (kernels/cuda/mma_sync.cuh)

__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<unsigned*>(&v);
}

// Grid (T, NN / BN, N): tile blockIdx.x of sample blockIdx.z, output columns [BN blockIdx.y, +BN) (NN = K; kTrans:
// K x taps). Smem: A ring, B ring, (kProj) projection B ring; after the mainloop the A ring holds the epilogue's
// rounded [128][BN + 8] tile for the statistics.
template <int BN, bool kProj, bool kTrans>
__global__ void __launch_bounds__(kThreads) conv_fused_kernel_mma(const __grid_constant__ FusedArgs a) {
  static_assert(BN == 32 || BN == 64, "BN is 32 or 64");
  static_assert(!(kProj && kTrans), "no projection on the transposed conv");
  constexpr int kNT = BN / 8;
  constexpr int kA = kStages * kBM * kBK, kB = kStages * BN * kBK, kP = kProj ? kB : 0;
  constexpr int kLd = BN + 8;  // epilogue tile row (halves): rows g = 0..7 of a fragment hit distinct banks
  static_assert(kBM * kLd + 2 * 3 * kThreads <= kA, "the epilogue tile and the statistics scratch fit in the A ring");
  static_assert((kA + kB + kP) * 2 <= 48 * 1024, "static shared memory");
  __shared__ __align__(128) uint16_t smem[kA + kB + kP];
  uint16_t* const sA = smem;
  uint16_t* const sB = smem + kA;
  uint16_t* const sP = smem + kA + kB;

  const ConvArgs& g = a.g;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = blockIdx.z;
  const int64_t t = blockIdx.x;
  const int64_t row0 = t * kBM;  // within the sample
  const int n_base = blockIdx.y * BN;
  const int C = g.C, Ca = a.src[0].C;
  const int KT = (kTrans ? 1 : g.taps) * (C / kBK);
  const int centre = kProj ? fused::centre_tap(g.KD, g.KH, g.KW) : -1;
  const int count = fused::tile_rows(a.S, t);

  // This thread's 4 A rows: validity and first input coordinate of tap (0,0,0).
  int rz[4], ry[4], rx[4];
  bool rv[4];
  {
    const int stride[3] = {g.s0, g.s1, g.s2}, pad[3] = {g.p0, g.p1, g.p2};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = v2::a_row(tid, i);
      rv[i] = r < count;
      rz[i] = ry[i] = rx[i] = 0;
      if (!kTrans) fused::voxel_origin(rv[i] ? row0 + r : 0, g.OH, g.OW, stride, pad, &rz[i], &ry[i], &rx[i]);
    }
  }
  const int a_chunk = v2::a_chunk(tid);

  // Row i's input voxel for tap (t, r, s) is inside the volume (kTrans: the row exists).
  auto in_volume = [&](int i, int tap, int64_t* voxel) {
    if (kTrans) {
      *voxel = int64_t(n) * a.S + row0 + v2::a_row(tid, i);
      return rv[i];
    }
    const int dil[3] = {g.d0, g.d1, g.d2};
    const int64_t v = fused::tap_voxel(n, rz[i], ry[i], rx[i], tap, g.KH, g.KW, dil, g.D, g.H, g.W);
    const bool ok = rv[i] && v >= 0;
    *voxel = ok ? v : 0;
    return ok;
  };

  auto load_stage = [&](int stage, int kt) {
    int tap, c0, cs;
    v2::kstep(kt, C, &tap, &c0);
    const Src& s = a.src[fused::source_of(c0, Ca, &cs)];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      int64_t v;
      const bool ok = in_volume(i, tap, &v);
      const uint16_t* src = ok ? s.x + (v * s.C + cs + a_chunk * 8) : s.x;
      cp_async16(&sA[stage * kBM * kBK + v2::swz(v2::a_row(tid, i), a_chunk)], src, ok);
    }
#pragma unroll
    for (int j = 0; j < BN / 32; ++j) {
      const int idx = tid + kThreads * j;
      const int row = v2::b_row(idx), chunk = v2::b_chunk(idx);
      const int64_t wrow = kTrans ? int64_t(n_base + row) : int64_t(n_base + row) * g.taps + tap;
      cp_async16(&sB[stage * BN * kBK + v2::swz(row, chunk)], a.w + (wrow * C + c0 + chunk * 8), true);
      if (kProj && tap == centre)
        cp_async16(&sP[stage * BN * kBK + v2::swz(row, chunk)], a.pw + (int64_t(n_base + row) * C + c0 + chunk * 8),
                   true);
    }
  };

  // Prologue on this thread's own landed chunks of stage kt (visible to it after its cp.async wait): normalise the
  // in-volume ones; zero-filled padding stays 0.
  auto transform_stage = [&](int stage, int kt) {
    int tap, c0, cs;
    v2::kstep(kt, C, &tap, &c0);
    const Src& s = a.src[fused::source_of(c0, Ca, &cs)];
    if (!s.mean) return;
    const int c = cs + a_chunk * 8;
    float mu[8], rs[8], ga[8], be[8];
    const bool affine = s.gamma != nullptr;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      mu[e] = s.mean[n * s.C + c + e];
      rs[e] = s.rstd[n * s.C + c + e];
      ga[e] = affine ? s.gamma[c + e] : 0.f;
      be[e] = affine ? s.beta[c + e] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      int64_t v;
      if (!in_volume(i, tap, &v)) continue;
      uint4* p = reinterpret_cast<uint4*>(&sA[stage * kBM * kBK + v2::swz(v2::a_row(tid, i), a_chunk)]);
      uint4 q = *p;
      uint16_t* h = reinterpret_cast<uint16_t*>(&q);
#pragma unroll
      for (int e = 0; e < 8; ++e)
        h[e] = f2h(fused::normalise_value(h2f(h[e]), mu[e], rs[e], affine, ga[e], be[e], s.lrelu != 0, a.slope));
      *p = q;
    }
  };

  float acc[2][kNT][4], pacc[kProj ? 2 : 1][kProj ? kNT : 1][4];
  v2::zero_tile<kNT>(acc);
  if constexpr (kProj) v2::zero_tile<kNT>(pacc);
  v2::prime_stages(load_stage, KT);

  const int warp_m = warp * 32;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<kStages - 2>();  // stage kt has landed (for this thread) ...
    transform_stage(kt % kStages, kt);
    __syncthreads();               // ... and, transformed, for all threads; everyone is done with stage kt-1
    const int pre = kt + kStages - 1;
    if (pre < KT) load_stage(pre % kStages, pre);
    cp_async_commit();  // always commit (possibly empty) so the group count stays in step
    const uint16_t* tA = sA + (kt % kStages) * kBM * kBK;
    const uint16_t* tB = sB + (kt % kStages) * BN * kBK;
    bool proj_step = false;
    if constexpr (kProj) proj_step = kt / (C / kBK) == centre;
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      unsigned af[2][4];
      v2::load_a_frags(af, tA, warp_m, lane, kk);
      unsigned bf[kNT][2];
      v2::load_b_frags<kNT>(bf, tB, lane, kk);
      v2::mma_tile<false, kNT>(acc, af, bf);
      if constexpr (kProj) {
        if (proj_step) {  // the projection's weights against the same A fragments (the centre tap)
          v2::load_b_frags<kNT>(bf, sP + (kt % kStages) * BN * kBK, lane, kk);
          v2::mma_tile<false, kNT>(pacc, af, bf);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the rings: the A ring becomes the epilogue tile

  // Epilogue: accumulator fragment (row g / g+8, columns 2t, 2t+1) -> packed fp16 pairs to y (kTrans: scattered) and,
  // for the statistics, to the smem tile; then all threads reduce its columns (tile_partials, 128 / BN per column).
  uint16_t* sT = sA;
#pragma unroll 1
  for (int out = 0; out < (kProj ? 2 : 1); ++out) {
    uint16_t* y = out ? a.py : a.y;
    const StatsArgs& st = out ? a.pst : a.st;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = v2::acc_row(warp_m, mi, lane, half * 2);
        if (r >= count) continue;
        const int64_t m = fused::tile_global_row(n, a.S, t, r);
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni) {
          const int col = v2::acc_col(ni, lane, half * 2);
          float lo, hi;
          if constexpr (kProj) {
            lo = out ? pacc[mi][ni][half * 2] : acc[mi][ni][half * 2];
            hi = out ? pacc[mi][ni][half * 2 + 1] : acc[mi][ni][half * 2 + 1];
          } else {
            lo = acc[mi][ni][half * 2];
            hi = acc[mi][ni][half * 2 + 1];
          }
          const unsigned packed = pack2(lo, hi);
          if constexpr (kTrans) {
            const int c = n_base + col;
            y[v2::convt_out_index(m, c, g.D, g.H, g.W, g.KD, g.KH, g.KW, g.K)] = uint16_t(packed & 0xFFFFu);
            y[v2::convt_out_index(m, c + 1, g.D, g.H, g.W, g.KD, g.KH, g.KW, g.K)] = uint16_t(packed >> 16);
          } else {
            *reinterpret_cast<unsigned*>(y + m * g.K + n_base + col) = packed;
            if (st.part) *reinterpret_cast<unsigned*>(&sT[r * kLd + col]) = packed;
          }
        }
      }
    }
    if (!kTrans && st.part) {
      __syncthreads();
      tile_partials(st, sT, kLd, BN, count, reinterpret_cast<float*>(sA + kBM * kLd), n, n_base, g.K, g.N, a.T, t);
    }
  }
}

// ==== statistics finalize ==========================================================================================
// Block (k, n): thread t combines tiles [range_begin(t), range_begin(t+1)) in order, then the fixed tree
// (fused::combine_partials is the same order, serially).
__global__ void __launch_bounds__(fused::kFinalizeThreads)
    stats_finalize_kernel(const float* __restrict__ part, int N, int K, int64_t T, float eps, float* __restrict__ mean,
                          float* __restrict__ rstd) {
  constexpr int P = fused::kFinalizeThreads;
  __shared__ double sn[P], sm[P], sq[P];
  const int k = blockIdx.x, n = blockIdx.y, t = threadIdx.x;
  const float* cnt = part + fused::partial_index(0, n, k, 0, N, K, T);
  const float* mu = part + fused::partial_index(1, n, k, 0, N, K, T);
  const float* m2 = part + fused::partial_index(2, n, k, 0, N, K, T);
  double a = 0, b = 0, c = 0;
  for (int64_t i = fused::range_begin(t, T); i < fused::range_begin(t + 1, T); ++i)
    fused::chan_combine(a, b, c, cnt[i], mu[i], m2[i]);
  sn[t] = a;
  sm[t] = b;
  sq[t] = c;
  for (int s = P / 2; s > 0; s >>= 1) {
    __syncthreads();
    if (t < s) {
      double x = sn[t], y = sm[t], z = sq[t];
      fused::chan_combine(x, y, z, sn[t + s], sm[t + s], sq[t + s]);
      sn[t] = x;
      sm[t] = y;
      sq[t] = z;
    }
  }
  if (t == 0) {
    mean[n * K + k] = float(sm[0]);
    rstd[n * K + k] = fused::rstd_of(sn[0], sq[0], eps);
  }
}

// ==== residual, head ==============================================================================================
// Thread = V consecutive elements of one voxel (V = 8 when C % 8 == 0: 16-byte accesses; else 1).
template <int V>
__global__ void residual_kernel(int64_t total, int C, int64_t S, Src h, Src r, uint16_t* y, int lrelu, float slope) {
  const int64_t i0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (i0 >= total) return;
  const int c0 = int(i0 % C);
  const int n = int(i0 / (S * C));
  uint16_t hv[V], rv[V], out[V];
  if constexpr (V == 8) {
    *reinterpret_cast<uint4*>(hv) = *reinterpret_cast<const uint4*>(h.x + i0);
    *reinterpret_cast<uint4*>(rv) = *reinterpret_cast<const uint4*>(r.x + i0);
  } else {
    hv[0] = h.x[i0];
    rv[0] = r.x[i0];
  }
#pragma unroll
  for (int e = 0; e < V; ++e) {
    float v = fused::f_add(operand_value(h, n, c0 + e, h2f(hv[e]), slope), operand_value(r, n, c0 + e, h2f(rv[e]), slope));
    if (lrelu) v = fused::lrelu_value(v, slope);
    out[e] = f2h(v);
  }
  if constexpr (V == 8) *reinterpret_cast<uint4*>(y + i0) = *reinterpret_cast<const uint4*>(out);
  else y[i0] = out[0];
}

__global__ void head_kernel(int64_t voxels, int64_t S, Src x, int K, const float* __restrict__ w,
                            const float* __restrict__ bias, float* __restrict__ logits, float* __restrict__ probs,
                            uint8_t* __restrict__ mask, float slope) {
  const int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= voxels) return;
  const int n = int(v / S), C = x.C;
  float acc[fused::kHeadMaxK];
#pragma unroll
  for (int k = 0; k < fused::kHeadMaxK; ++k) acc[k] = 0.f;
  for (int c = 0; c < C; ++c) {
    const float xv = operand_value(x, n, c, h2f(x.x[v * C + c]), slope);
#pragma unroll
    for (int k = 0; k < fused::kHeadMaxK; ++k)
      if (k < K) acc[k] = fmaf(xv, w[int64_t(k) * C + c], acc[k]);
  }
  float z[fused::kHeadMaxK] = {};
  double mx = 0;
#pragma unroll
  for (int k = 0; k < fused::kHeadMaxK; ++k)
    if (k < K) {
      z[k] = acc[k] + bias[k];
      logits[v * K + k] = z[k];
      mx = k == 0 ? double(z[0]) : fmax(mx, double(z[k]));
    }
  double sum = 0;
#pragma unroll
  for (int k = 0; k < fused::kHeadMaxK; ++k)
    if (k < K) sum += exp(double(z[k]) - mx);
  int best = 0;
  float zbest = z[0];
#pragma unroll
  for (int k = 0; k < fused::kHeadMaxK; ++k)
    if (k < K) {
      probs[v * K + k] = static_cast<float>(exp(double(z[k]) - mx) / sum);
      if (k > 0 && !isnan(zbest) && (z[k] > zbest || isnan(z[k]))) {
        best = k;
        zbest = z[k];
      }
    }
  mask[v] = static_cast<uint8_t>(best);
}

// ==== host side ====================================================================================================

unsigned blocks_for(int64_t n, int block) {
  const int64_t g = (n + block - 1) / block;
  DEX_CHECK(g < (int64_t(1) << 31), "plan fused kernel: ", n, " elements exceed one grid");
  return unsigned(g);
}

void finalize(const StatsOut& st, int N, int K, int64_t S, cudaStream_t s) {
  const int64_t T = fused::tiles_per_sample(S);
  stats_finalize_kernel<<<dim3(unsigned(K), unsigned(N)), fused::kFinalizeThreads, 0, s>>>(
      static_cast<const float*>(st.partials), N, K, T, st.eps, st.mean, st.rstd);
  DEX_LAUNCH_CHECK("stats_finalize_kernel", s);
}

bool operand_ok(const Operand& o, std::string* why, const char* what) {
  if (!o.x || o.channels <= 0) {
    if (why) *why = str(what, ": no data or no channels");
    return false;
  }
  if (o.mean && !o.rstd) {
    if (why) *why = str(what, ": mean without rstd");
    return false;
  }
  if ((o.gamma == nullptr) != (o.beta == nullptr)) {
    if (why) *why = str(what, ": gamma and beta go together");
    return false;
  }
  return true;
}

}  // namespace

bool conv_supports(const ConvJob& j, Variant v, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  const Conv3dParams& p = j.conv;
  if (j.num_in != 1 && j.num_in != 2) return no(str("1 or 2 operands, got ", j.num_in));
  int C = 0;
  for (int i = 0; i < j.num_in; ++i) {
    if (!operand_ok(j.in[i], why, i ? "operand 1" : "operand 0")) return false;
    C += j.in[i].channels;
  }
  if (C != p.C) return no(str("operands hold ", C, " channels, the conv reads ", p.C));
  if (!j.w || !j.y) return no("no weights or output");
  if (p.out_voxels() <= 0) return no("empty output");
  const int64_t S = p.out_voxels() / p.N;
  if (fused::tiles_per_sample(S) >= (int64_t(1) << 31) || p.N > 65535) return no("too many tiles for the grid");
  if (j.stats.mean && (!j.stats.rstd || !j.stats.partials)) return no("statistics need rstd and a partials workspace");
  if (j.proj_w) {
    if (j.num_in != 1) return no("the projection rides on a one-operand conv1");
    std::string w;
    if (!fused::projection_rides_on(p, j.proj, &w)) return no(w);
    if (!j.proj_y) return no("projection without an output");
    if (j.proj_stats.mean && (!j.proj_stats.rstd || !j.proj_stats.partials))
      return no("projection statistics need rstd and a partials workspace");
  }
  if (v == Variant::Direct || v == Variant::Best) return true;
  // Mma
  for (int i = 0; i < j.num_in; ++i) {
    if (j.in[i].channels % kBK != 0) return no(str("Mma needs each operand's channels % 32 == 0, got ", j.in[i].channels));
    if (!aligned16(j.in[i].x)) return no("Mma needs 16-byte aligned operands");
  }
  if (p.K % 32 != 0) return no(str("Mma needs K % 32 == 0, got K = ", p.K));
  if (!aligned16(j.w) || !aligned16(j.y) || (j.proj_w && (!aligned16(j.proj_w) || !aligned16(j.proj_y))))
    return no("Mma needs 16-byte aligned weights and outputs");
  return true;
}

void conv(const ConvJob& j, Variant v, void* stream) {
  std::string why;
  j.conv.validate();
  DEX_CHECK(conv_supports(j, v, &why), "plan_fused::conv (", variant_name(v), "): ", why);
  const bool mma = v == Variant::Mma || (v == Variant::Best && conv_supports(j, Variant::Mma, nullptr));
  const Conv3dParams& p = j.conv;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  FusedArgs a{};
  a.g = conv_geom(p);
  a.src[0] = make_src(j.in[0]);
  a.src[1] = j.num_in == 2 ? make_src(j.in[1]) : Src{nullptr, 0, nullptr, nullptr, nullptr, nullptr, 0};
  a.w = static_cast<const uint16_t*>(j.w);
  a.y = static_cast<uint16_t*>(j.y);
  a.st.part = j.stats.mean ? static_cast<float*>(j.stats.partials) : nullptr;
  const bool proj = j.proj_w != nullptr;
  a.pw = static_cast<const uint16_t*>(j.proj_w);
  a.py = static_cast<uint16_t*>(j.proj_y);
  a.pst.part = proj && j.proj_stats.mean ? static_cast<float*>(j.proj_stats.partials) : nullptr;
  a.S = p.out_voxels() / p.N;
  a.T = fused::tiles_per_sample(a.S);
  a.slope = j.slope;
  if (!mma) {
    const dim3 grid(unsigned(a.T), unsigned((p.K + fused::kDirectGroup - 1) / fused::kDirectGroup), unsigned(p.N));
    if (proj) conv_fused_kernel_direct<true><<<grid, kTileRows, 0, s>>>(a);
    else conv_fused_kernel_direct<false><<<grid, kTileRows, 0, s>>>(a);
    DEX_LAUNCH_CHECK("conv_fused_kernel_direct", s);
  } else {
    const int BN = p.K % 64 == 0 ? 64 : 32;
    const dim3 grid(unsigned(a.T), unsigned(p.K / BN), unsigned(p.N));
    if (BN == 64) {
      if (proj) conv_fused_kernel_mma<64, true, false><<<grid, kThreads, 0, s>>>(a);
      else conv_fused_kernel_mma<64, false, false><<<grid, kThreads, 0, s>>>(a);
    } else {
      if (proj) conv_fused_kernel_mma<32, true, false><<<grid, kThreads, 0, s>>>(a);
      else conv_fused_kernel_mma<32, false, false><<<grid, kThreads, 0, s>>>(a);
    }
    DEX_LAUNCH_CHECK("conv_fused_kernel_mma", s);
  }
  if (j.stats.mean) finalize(j.stats, p.N, p.K, a.S, s);
  if (proj && j.proj_stats.mean) finalize(j.proj_stats, p.N, p.K, a.S, s);
}

bool conv_transpose_supports(const ConvTranspose3dParams& p, const Operand& in, std::string* why) {
  auto no = [&](const std::string& s) {
    if (why) *why = s;
    return false;
  };
  if (!operand_ok(in, why, "operand")) return false;
  if (in.channels != p.C) return no(str("the operand holds ", in.channels, " channels, the conv reads ", p.C));
  if (p.KD != p.stride[0] || p.KH != p.stride[1] || p.KW != p.stride[2] || p.pad[0] || p.pad[1] || p.pad[2])
    return no("kernel == stride and no padding (one GEMM) only");
  if (p.C % kBK != 0) return no(str("Mma needs C % 32 == 0, got C = ", p.C));
  if ((int64_t(p.K) * p.taps()) % 32 != 0) return no(str("Mma needs K x taps % 32 == 0, got ", p.K * p.taps()));
  if (!aligned16(in.x)) return no("Mma needs a 16-byte aligned operand");
  if (fused::tiles_per_sample(int64_t(p.D) * p.H * p.W) >= (int64_t(1) << 31) || p.N > 65535)
    return no("too many tiles for the grid");
  return true;
}

void conv_transpose(const ConvTranspose3dParams& p, const Operand& in, const void* w, void* y, float slope,
                    void* stream) {
  std::string why;
  p.validate();
  DEX_CHECK(conv_transpose_supports(p, in, &why), "plan_fused::conv_transpose: ", why);
  DEX_CHECK(w && y && aligned16(w) && aligned16(y), "plan_fused::conv_transpose: 16-byte aligned weights and output");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  FusedArgs a{};
  ConvArgs& g = a.g;
  g.N = p.N; g.C = p.C; g.K = p.K; g.D = p.D; g.H = p.H; g.W = p.W;
  g.OD = p.OD(); g.OH = p.OH(); g.OW = p.OW();
  g.KD = p.KD; g.KH = p.KH; g.KW = p.KW;
  g.s0 = p.stride[0]; g.s1 = p.stride[1]; g.s2 = p.stride[2];
  g.d0 = g.d1 = g.d2 = 1;
  g.taps = p.KD * p.KH * p.KW;
  a.src[0] = make_src(in);
  a.src[1] = Src{nullptr, 0, nullptr, nullptr, nullptr, nullptr, 0};
  a.w = static_cast<const uint16_t*>(w);
  a.y = static_cast<uint16_t*>(y);
  a.S = int64_t(p.D) * p.H * p.W;
  a.T = fused::tiles_per_sample(a.S);
  a.slope = slope;
  const int NN = p.K * g.taps;
  if (NN % 64 == 0) {
    conv_fused_kernel_mma<64, false, true><<<dim3(unsigned(a.T), unsigned(NN / 64), unsigned(p.N)), kThreads, 0, s>>>(a);
  } else {
    conv_fused_kernel_mma<32, false, true><<<dim3(unsigned(a.T), unsigned(NN / 32), unsigned(p.N)), kThreads, 0, s>>>(a);
  }
  DEX_LAUNCH_CHECK("conv_fused_kernel_mma (transposed)", s);
}

void residual(int N, int64_t S, int C, const Operand& h, const Operand& r, void* y, bool lrelu, float slope,
              void* stream) {
  std::string why;
  DEX_CHECK(operand_ok(h, &why, "h") && operand_ok(r, &why, "r"), "plan_fused::residual: ", why);
  DEX_CHECK(h.channels == C && r.channels == C, "plan_fused::residual: operands hold ", h.channels, " and ",
            r.channels, " channels, expected ", C);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t total = int64_t(N) * S * C;
  if (total == 0) return;
  const Src hs = make_src(h), rs = make_src(r);
  auto* ys = static_cast<uint16_t*>(y);
  if (C % 8 == 0 && aligned16(h.x) && aligned16(r.x) && aligned16(y)) {
    residual_kernel<8><<<blocks_for(total / 8, 256), 256, 0, s>>>(total, C, S, hs, rs, ys, lrelu ? 1 : 0, slope);
  } else {
    residual_kernel<1><<<blocks_for(total, 256), 256, 0, s>>>(total, C, S, hs, rs, ys, lrelu ? 1 : 0, slope);
  }
  DEX_LAUNCH_CHECK("residual_kernel", s);
}

void head(int N, int64_t S, const Operand& x, int K, const float* w, const float* bias, float* logits, float* probs,
          uint8_t* mask, float slope, void* stream) {
  std::string why;
  DEX_CHECK(operand_ok(x, &why, "x"), "plan_fused::head: ", why);
  DEX_CHECK(K >= 1 && K <= fused::kHeadMaxK, "plan_fused::head: 1 to ", fused::kHeadMaxK, " output channels, got ", K);
  DEX_CHECK(w && bias && logits && probs && mask, "plan_fused::head: null pointer");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t voxels = int64_t(N) * S;
  if (voxels == 0) return;
  head_kernel<<<blocks_for(voxels, 128), 128, 0, s>>>(voxels, S, make_src(x), K, w, bias, logits, probs, mask, slope);
  DEX_LAUNCH_CHECK("head_kernel", s);
}

}  // namespace plan_fused
}  // namespace dex
