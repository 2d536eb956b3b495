// The warp-level step of the v2 mma.sync kernels (kernels/cuda/conv3d.cu fprop / dgrad / transposed, the fused plan
// conv in infer/plan_conv_fused.cu): load one k16 half (kk = 0, 1) of a stage's swizzled A and B tiles into mma
// fragments with ldmatrix (index maps: conv3d_v2_layout.h), then the warp's 2 x kNT m16n8k16 MMAs; plus the
// accumulator reset and the cp.async pipeline prologue they share.
#pragma once
#include <cstdint>

#include "kernels/cuda/conv3d_v2_layout.h"
#include "kernels/cuda/mma_sync.cuh"

namespace dex {
namespace v2 {

// A fragments of this warp's two m16 slices (rows warp_m * 32 + mi * 16 ...) of the [kBM][kBK] tile.
__device__ __forceinline__ void load_a_frags(unsigned (&af)[2][4], const uint16_t* tA, int warp_m, int lane, int kk) {
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) mma_sync::ldmatrix_x4(af[mi], &tA[swz(lda_row(warp_m, mi, lane), lda_chunk(kk, lane))]);
}

// B fragments of the kNT n8 tiles of a [BN][kBK] tile (one ldmatrix.x4 serves two n8 tiles).
template <int kNT>
__device__ __forceinline__ void load_b_frags(unsigned (&bf)[kNT][2], const uint16_t* tB, int lane, int kk) {
#pragma unroll
  for (int nj = 0; nj < kNT / 2; ++nj) {
    unsigned r[4];
    mma_sync::ldmatrix_x4(r, &tB[swz(ldb_row(nj, lane), ldb_chunk(kk, lane))]);
    bf[2 * nj][0] = r[0];
    bf[2 * nj][1] = r[1];
    bf[2 * nj + 1][0] = r[2];
    bf[2 * nj + 1][1] = r[3];
  }
}

// acc[mi][ni] += A slice mi x B tile ni (fp32 accumulation).
template <bool kBf16, int kNT>
__device__ __forceinline__ void mma_tile(float (&acc)[2][kNT][4], const unsigned (&af)[2][4],
                                         const unsigned (&bf)[kNT][2]) {
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni) mma_sync::mma_16816<kBf16>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
}

template <int kNT>
__device__ __forceinline__ void zero_tile(float (&acc)[2][kNT][4]) {
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.f;
}

// Pipeline prologue: stages 0 .. kStages-2 in flight, one cp.async group each (empty past the last k-step, so the
// group count stays in step with the main loop's waits). load_stage(stage, kt) issues stage `stage`'s copies.
template <class LoadStage>
__device__ __forceinline__ void prime_stages(const LoadStage& load_stage, int KT) {
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < KT) load_stage(st, st);
    mma_sync::cp_async_commit();
  }
}

}  // namespace v2
}  // namespace dex
