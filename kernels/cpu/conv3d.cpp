// conv3d on the CPU, fp32, NDHWC activations, KTRSC weights. Variants (CpuConvImpl):
//   Reference  plain nested loops over N, output voxel, K, taps, C with a double accumulator; dgrad and wgrad
//              are the exact adjoints written the same way. The spec; never optimised.
//   Gemm       (default) im2col + OpenBLAS cblas_sgemm over chunks of output voxels whose im2col panel is
//              about kConvChunkBytes (1 MiB: it stays in a core's L2 between im2col and sgemm; 8 MiB and more
//              measured 1.4-1.8x slower single-threaded on the 128^3 layers), but at least 512 rows (up to a
//              16 MiB panel) so wide layers amortise the weight packing (upsamples.0.conv1: 144 -> 68 ms).
//              fprop: OpenMP threads take whole chunks (each its own panel: im2col + a single-threaded sgemm).
//              dgrad, stride 1: the fprop path on dy with flipped, channel-swapped weights (full padding).
//              dgrad, strided: sgemm (OpenBLAS threads) into a panel + col2im scatter-add threaded over
//              channel blocks.
//              wgrad: 4 fixed runs of chunks, each summed (im2col + single-threaded sgemm) into its own partial
//              dw by one OpenMP thread, partials added in run order: the result does not depend on the thread
//              count.
//              1x1x1 stride-1 unpadded convs skip im2col: one sgemm straight on the activations.
// Conv3dParams::validate lives here too.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/conv3d.h"
#include "kernels/cpu/conv3d_gemm.h"

namespace dex {

Conv3dParams conv3d_dgrad_as_fprop_params(const Conv3dParams& p) {
  Conv3dParams q = p;
  q.C = p.K;
  q.K = p.C;
  q.D = p.OD();
  q.H = p.OH();
  q.W = p.OW();
  const int k[3] = {p.KD, p.KH, p.KW};
  for (int a = 0; a < 3; ++a) q.pad[a] = p.dil[a] * (k[a] - 1) - p.pad[a];
  return q;
}

void Conv3dParams::validate() const {
  DEX_CHECK(N > 0 && C > 0 && K > 0, "conv3d: N, C, K must be positive, got N=", N, " C=", C, " K=", K);
  DEX_CHECK(D > 0 && H > 0 && W > 0, "conv3d: input extent must be positive, got D=", D, " H=", H, " W=", W);
  DEX_CHECK(KD > 0 && KH > 0 && KW > 0, "conv3d: kernel size must be positive, got ", KD, "x", KH, "x", KW);
  for (int a = 0; a < 3; ++a) {
    DEX_CHECK(stride[a] > 0, "conv3d: stride[", a, "] must be positive, got ", stride[a]);
    DEX_CHECK(dil[a] > 0, "conv3d: dilation[", a, "] must be positive, got ", dil[a]);
    DEX_CHECK(pad[a] >= 0, "conv3d: padding[", a, "] must be >= 0, got ", pad[a]);
  }
  DEX_CHECK(OD() > 0 && OH() > 0 && OW() > 0, "conv3d: output extent must be positive, got ", OD(), "x", OH(), "x",
            OW(), " for input ", D, "x", H, "x", W, " kernel ", KD, "x", KH, "x", KW, " stride ", stride[0], ",",
            stride[1], ",", stride[2], " padding ", pad[0], ",", pad[1], ",", pad[2]);
}

// ---------------------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------------------
namespace {

void conv3d_fprop_reference(const Conv3dParams& p, const float* x, const float* w, float* y) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int n = 0; n < p.N; ++n)
    for (int od = 0; od < OD; ++od)
      for (int oh = 0; oh < OH; ++oh)
        for (int ow = 0; ow < OW; ++ow)
          for (int k = 0; k < p.K; ++k) {
            double acc = 0;
            for (int kd = 0; kd < p.KD; ++kd) {
              const int id = od * p.stride[0] - p.pad[0] + kd * p.dil[0];
              if (id < 0 || id >= p.D) continue;
              for (int kh = 0; kh < p.KH; ++kh) {
                const int ih = oh * p.stride[1] - p.pad[1] + kh * p.dil[1];
                if (ih < 0 || ih >= p.H) continue;
                for (int kw = 0; kw < p.KW; ++kw) {
                  const int iw = ow * p.stride[2] - p.pad[2] + kw * p.dil[2];
                  if (iw < 0 || iw >= p.W) continue;
                  const float* xv = x + ((((int64_t)n * p.D + id) * p.H + ih) * p.W + iw) * p.C;
                  const float* wv = w + (((int64_t)k * p.KD + kd) * p.KH + kh) * p.KW * p.C + (int64_t)kw * p.C;
                  for (int c = 0; c < p.C; ++c) acc += double(xv[c]) * double(wv[c]);
                }
              }
            }
            y[((((int64_t)n * OD + od) * OH + oh) * OW + ow) * p.K + k] = float(acc);
          }
}

// Output index along one axis that input index i and tap t meet at; -1 when none.
inline int out_index(int i, int t, int stride, int pad, int dil, int out_extent) {
  const int num = i + pad - t * dil;
  if (num < 0 || num % stride != 0) return -1;
  const int o = num / stride;
  return o < out_extent ? o : -1;
}

void conv3d_dgrad_reference(const Conv3dParams& p, const float* dy, const float* w, float* dx, GradMode mode) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int n = 0; n < p.N; ++n)
    for (int id = 0; id < p.D; ++id)
      for (int ih = 0; ih < p.H; ++ih)
        for (int iw = 0; iw < p.W; ++iw)
          for (int c = 0; c < p.C; ++c) {
            double acc = 0;
            for (int kd = 0; kd < p.KD; ++kd) {
              const int od = out_index(id, kd, p.stride[0], p.pad[0], p.dil[0], OD);
              if (od < 0) continue;
              for (int kh = 0; kh < p.KH; ++kh) {
                const int oh = out_index(ih, kh, p.stride[1], p.pad[1], p.dil[1], OH);
                if (oh < 0) continue;
                for (int kw = 0; kw < p.KW; ++kw) {
                  const int ow = out_index(iw, kw, p.stride[2], p.pad[2], p.dil[2], OW);
                  if (ow < 0) continue;
                  const float* g = dy + ((((int64_t)n * OD + od) * OH + oh) * OW + ow) * p.K;
                  const int64_t tap = ((int64_t)kd * p.KH + kh) * p.KW + kw;
                  for (int k = 0; k < p.K; ++k) acc += double(g[k]) * double(w[(k * p.taps() + tap) * p.C + c]);
                }
              }
            }
            float& out = dx[((((int64_t)n * p.D + id) * p.H + ih) * p.W + iw) * p.C + c];
            out = mode == GradMode::Accumulate ? out + float(acc) : float(acc);
          }
}

void conv3d_wgrad_reference(const Conv3dParams& p, const float* x, const float* dy, float* dw, GradMode mode) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int k = 0; k < p.K; ++k)
    for (int kd = 0; kd < p.KD; ++kd)
      for (int kh = 0; kh < p.KH; ++kh)
        for (int kw = 0; kw < p.KW; ++kw)
          for (int c = 0; c < p.C; ++c) {
            double acc = 0;
            for (int n = 0; n < p.N; ++n)
              for (int od = 0; od < OD; ++od) {
                const int id = od * p.stride[0] - p.pad[0] + kd * p.dil[0];
                if (id < 0 || id >= p.D) continue;
                for (int oh = 0; oh < OH; ++oh) {
                  const int ih = oh * p.stride[1] - p.pad[1] + kh * p.dil[1];
                  if (ih < 0 || ih >= p.H) continue;
                  for (int ow = 0; ow < OW; ++ow) {
                    const int iw = ow * p.stride[2] - p.pad[2] + kw * p.dil[2];
                    if (iw < 0 || iw >= p.W) continue;
                    acc += double(x[((((int64_t)n * p.D + id) * p.H + ih) * p.W + iw) * p.C + c]) *
                           double(dy[((((int64_t)n * OD + od) * OH + oh) * OW + ow) * p.K + k]);
                  }
                }
              }
            float& out = dw[((((int64_t)k * p.KD + kd) * p.KH + kh) * p.KW + kw) * p.C + c];
            out = mode == GradMode::Accumulate ? out + float(acc) : float(acc);
          }
}

// ---------------------------------------------------------------------------------------------------------
// Gemm
// ---------------------------------------------------------------------------------------------------------

// True when the im2col panel of a chunk is the input itself (1x1x1, stride 1, no padding).
bool is_pointwise(const Conv3dParams& p) {
  return p.taps() == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.stride[2] == 1 && p.pad[0] == 0 &&
         p.pad[1] == 0 && p.pad[2] == 0;
}

int64_t chunk_rows(const Conv3dParams& p) {
  const int64_t row_bytes = p.taps() * p.C * int64_t(sizeof(float));
  // Wide rows (many channels) would leave only a few rows per sgemm call, and repacking the weights for every
  // call dominates: take at least kConvMinChunkRows rows, up to kConvMaxChunkBytes per panel.
  const int64_t min_rows = std::min<int64_t>(kConvMinChunkRows, int64_t(kConvMaxChunkBytes) / row_bytes);
  const int64_t rows = std::max<int64_t>({int64_t(1), int64_t(kConvChunkBytes) / row_bytes, min_rows});
  return std::min(rows, p.out_voxels());
}

// Splits output-voxel index m into (n, od, oh, ow).
struct VoxelIndex {
  int n, d, h, w;
};
inline VoxelIndex split_voxel(int64_t m, int OD, int OH, int OW) {
  VoxelIndex v;
  v.w = int(m % OW);
  m /= OW;
  v.h = int(m % OH);
  m /= OH;
  v.d = int(m % OD);
  v.n = int(m / OD);
  return v;
}

// col[r][tap*C + c] = x at the input voxel that output voxel m0+r reads through tap (0 outside the volume).
void im2col(const Conv3dParams& p, const float* x, int64_t m0, int64_t rows, float* col, bool threaded) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  const int64_t row_len = p.taps() * p.C;
  const bool kw_contiguous = p.dil[2] == 1;
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t r = 0; r < rows; ++r) {
    const VoxelIndex v = split_voxel(m0 + r, OD, OH, OW);
    float* out = col + r * row_len;
    for (int kd = 0; kd < p.KD; ++kd) {
      const int id = v.d * p.stride[0] - p.pad[0] + kd * p.dil[0];
      for (int kh = 0; kh < p.KH; ++kh) {
        const int ih = v.h * p.stride[1] - p.pad[1] + kh * p.dil[1];
        float* o = out + (int64_t(kd) * p.KH + kh) * p.KW * p.C;
        if (id < 0 || id >= p.D || ih < 0 || ih >= p.H) {
          std::memset(o, 0, sizeof(float) * p.KW * p.C);
          continue;
        }
        const float* xrow = x + (((int64_t)v.n * p.D + id) * p.H + ih) * p.W * p.C;
        const int iw0 = v.w * p.stride[2] - p.pad[2];
        if (kw_contiguous) {
          // taps kw = lo..hi-1 read the contiguous input run iw0+lo .. iw0+hi-1
          const int lo = std::max(0, -iw0), hi = std::min(p.KW, p.W - iw0);
          if (hi <= lo) {
            std::memset(o, 0, sizeof(float) * p.KW * p.C);
            continue;
          }
          if (lo > 0) std::memset(o, 0, sizeof(float) * lo * p.C);
          std::memcpy(o + lo * p.C, xrow + int64_t(iw0 + lo) * p.C, sizeof(float) * (hi - lo) * p.C);
          if (hi < p.KW) std::memset(o + hi * p.C, 0, sizeof(float) * (p.KW - hi) * p.C);
        } else {
          for (int kw = 0; kw < p.KW; ++kw) {
            const int iw = iw0 + kw * p.dil[2];
            if (iw < 0 || iw >= p.W)
              std::memset(o + kw * p.C, 0, sizeof(float) * p.C);
            else
              std::memcpy(o + kw * p.C, xrow + int64_t(iw) * p.C, sizeof(float) * p.C);
          }
        }
      }
    }
  }
}

// dx += scatter of col (the adjoint of im2col). Threaded over channel blocks so no two threads touch one float.
void col2im_add(const Conv3dParams& p, const float* col, int64_t m0, int64_t rows, float* dx) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  const int64_t row_len = p.taps() * p.C;
  const int cblock = 16;
  const int nblocks = (p.C + cblock - 1) / cblock;
  // With few channel blocks, split the taps' kd instead only when it is safe: keep it simple and correct.
#pragma omp parallel for schedule(static)
  for (int b = 0; b < nblocks; ++b) {
    const int c0 = b * cblock, c1 = std::min(p.C, c0 + cblock);
    for (int64_t r = 0; r < rows; ++r) {
      const VoxelIndex v = split_voxel(m0 + r, OD, OH, OW);
      const float* in = col + r * row_len;
      for (int kd = 0; kd < p.KD; ++kd) {
        const int id = v.d * p.stride[0] - p.pad[0] + kd * p.dil[0];
        if (id < 0 || id >= p.D) continue;
        for (int kh = 0; kh < p.KH; ++kh) {
          const int ih = v.h * p.stride[1] - p.pad[1] + kh * p.dil[1];
          if (ih < 0 || ih >= p.H) continue;
          float* dxrow = dx + (((int64_t)v.n * p.D + id) * p.H + ih) * p.W * p.C;
          for (int kw = 0; kw < p.KW; ++kw) {
            const int iw = v.w * p.stride[2] - p.pad[2] + kw * p.dil[2];
            if (iw < 0 || iw >= p.W) continue;
            const float* src = in + ((int64_t(kd) * p.KH + kh) * p.KW + kw) * p.C;
            float* dst = dxrow + int64_t(iw) * p.C;
            for (int c = c0; c < c1; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

using detail::fprop_threads;

// A stride-1 dgrad is an fprop of dy with the flipped, channel-swapped weights w'[c][T-1-t][k] = w[k][t][c] and
// padding dil*(k-1) - pad (needs pad <= dil*(k-1)), so it runs on the fast threaded fprop path.
bool dgrad_as_fprop(const Conv3dParams& p) {
  if (is_pointwise(p)) return false;
  const int k[3] = {p.KD, p.KH, p.KW};
  for (int a = 0; a < 3; ++a)
    if (p.stride[a] != 1 || p.pad[a] > p.dil[a] * (k[a] - 1)) return false;
  return true;
}
// wgrad sums this many fixed runs of chunks separately (parallel over runs, deterministic for any thread count).
constexpr int kWgradGroups = 4;

size_t panels_bytes(const Conv3dParams& p) {
  return size_t(fprop_threads()) * size_t(chunk_rows(p) * p.taps() * p.C) * sizeof(float);
}
size_t flipped_weight_bytes(const Conv3dParams& p) {
  return (size_t(p.weight_elems()) * sizeof(float) + 255) / 256 * 256;
}

// Column panel(s): caller's workspace or an internal allocation of conv3d_cpu_workspace_bytes(p).
struct Panel {
  std::vector<float> owned;
  float* ptr = nullptr;
  Panel(const Conv3dParams& p, void* ws) {
    if (ws) {
      ptr = static_cast<float*>(ws);
    } else {
      owned.resize(conv3d_cpu_workspace_bytes(p) / sizeof(float) + 1);
      ptr = owned.data();
    }
  }
};

}  // namespace

size_t conv3d_cpu_workspace_bytes(const Conv3dParams& p) {
  p.validate();
  if (is_pointwise(p)) return 0;
  // fprop: one panel per OpenMP thread (col2im dgrad uses the first one); a stride-1 dgrad runs as
  // an fprop of the flipped weights: those weights, then that fprop's panels.
  size_t bytes = panels_bytes(p) + kWgradGroups * flipped_weight_bytes(p);  // wgrad: partial dw per group
  if (dgrad_as_fprop(p)) bytes = std::max(bytes, flipped_weight_bytes(p) + panels_bytes(conv3d_dgrad_as_fprop_params(p)));
  return bytes;
}

namespace detail {

void conv3d_fprop_gemm(const Conv3dParams& p, const float* x, const float* w, float* y, bool accumulate, void* ws) {
  const int64_t M = p.out_voxels(), row_len = p.taps() * p.C;
  const float beta = accumulate ? 1.f : 0.f;
  if (is_pointwise(p)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), p.K, p.C, 1.f, x, p.C, w, p.C, beta, y, p.K);
    return;
  }
  Panel col(p, ws);
  const int64_t step = chunk_rows(p), chunks = (M + step - 1) / step;
  const int threads = int(std::min<int64_t>(fprop_threads(), chunks));
  BlasSingleThread single;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t m0 = i * step, rows = std::min(step, M - m0);
    float* panel = col.ptr + int64_t(omp_get_thread_num()) * step * row_len;
    im2col(p, x, m0, rows, panel, false);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), p.K, int(row_len), 1.f, panel, int(row_len), w,
                int(row_len), beta, y + m0 * p.K, p.K);
  }
}

void conv3d_dgrad_gemm(const Conv3dParams& p, const float* dy, const float* w, float* dx, bool accumulate, void* ws) {
  const int64_t M = p.out_voxels(), row_len = p.taps() * p.C;
  if (is_pointwise(p)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), p.C, p.K, 1.f, dy, p.K, w, p.C,
                accumulate ? 1.f : 0.f, dx, p.C);
    return;
  }
  if (dgrad_as_fprop(p)) {
    Panel buf(p, ws);
    float* wf = buf.ptr;
    const int64_t T = p.taps();
    for (int k = 0; k < p.K; ++k)
      for (int64_t t = 0; t < T; ++t)
        for (int c = 0; c < p.C; ++c) wf[(c * T + (T - 1 - t)) * p.K + k] = w[(k * T + t) * p.C + c];
    conv3d_fprop_gemm(conv3d_dgrad_as_fprop_params(p), dy, wf, dx, accumulate,
                      reinterpret_cast<unsigned char*>(buf.ptr) + flipped_weight_bytes(p));
    return;
  }
  if (!accumulate) std::memset(dx, 0, sizeof(float) * size_t(p.in_elems()));
  Panel col(p, ws);
  const int64_t step = chunk_rows(p);
  for (int64_t m0 = 0; m0 < M; m0 += step) {
    const int64_t rows = std::min(step, M - m0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(row_len), p.K, 1.f, dy + m0 * p.K, p.K, w,
                int(row_len), 0.f, col.ptr, int(row_len));
    col2im_add(p, col.ptr, m0, rows, dx);
  }
}

void conv3d_wgrad_gemm(const Conv3dParams& p, const float* x, const float* dy, float* dw, bool accumulate, void* ws) {
  const int64_t M = p.out_voxels(), row_len = p.taps() * p.C;
  if (is_pointwise(p)) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p.K, p.C, int(M), 1.f, dy, p.K, x, p.C,
                accumulate ? 1.f : 0.f, dw, p.C);
    return;
  }
  // kWgradGroups contiguous runs of chunks, each summed into its own partial dw (OpenMP threads take whole
  // groups, each with its own panel and a single-threaded sgemm), then the partials are added in group order:
  // the result does not depend on the thread count.
  const int64_t step = chunk_rows(p), chunks = (M + step - 1) / step;
  const int groups = int(std::min<int64_t>(kWgradGroups, chunks));
  const int threads = std::min(fprop_threads(), groups);
  const int64_t wstride = int64_t(flipped_weight_bytes(p) / sizeof(float));
  Panel buf(p, ws);
  float* partials = buf.ptr;
  float* panels = buf.ptr + kWgradGroups * wstride;
  {
    BlasSingleThread single;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int g = 0; g < groups; ++g) {
      float* part = partials + g * wstride;
      float* panel = panels + int64_t(omp_get_thread_num()) * step * row_len;
      const int64_t c0 = chunks * g / groups, c1 = chunks * (g + 1) / groups;
      for (int64_t i = c0; i < c1; ++i) {
        const int64_t m0 = i * step, rows = std::min(step, M - m0);
        im2col(p, x, m0, rows, panel, false);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p.K, int(row_len), int(rows), 1.f, dy + m0 * p.K, p.K,
                    panel, int(row_len), i == c0 ? 0.f : 1.f, part, int(row_len));
      }
    }
  }
  const int64_t n = p.weight_elems();
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < n; ++e) {
    float sum = accumulate ? dw[e] : 0.f;
    for (int g = 0; g < groups; ++g) sum += partials[g * wstride + e];
    dw[e] = sum;
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------------------
void conv3d_fprop_cpu(const Conv3dParams& p, const float* x, const float* w, float* y, CpuConvImpl impl,
                      void* workspace) {
  p.validate();
  DEX_CHECK(x && w && y, "conv3d_fprop_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference)
    conv3d_fprop_reference(p, x, w, y);
  else
    detail::conv3d_fprop_gemm(p, x, w, y, false, workspace);
}

void conv3d_dgrad_cpu(const Conv3dParams& p, const float* dy, const float* w, float* dx, GradMode mode,
                      CpuConvImpl impl, void* workspace) {
  p.validate();
  DEX_CHECK(dy && w && dx, "conv3d_dgrad_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference)
    conv3d_dgrad_reference(p, dy, w, dx, mode);
  else
    detail::conv3d_dgrad_gemm(p, dy, w, dx, mode == GradMode::Accumulate, workspace);
}

void conv3d_wgrad_cpu(const Conv3dParams& p, const float* x, const float* dy, float* dw, GradMode mode,
                      CpuConvImpl impl, void* workspace) {
  p.validate();
  DEX_CHECK(x && dy && dw, "conv3d_wgrad_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference)
    conv3d_wgrad_reference(p, x, dy, dw, mode);
  else
    detail::conv3d_wgrad_gemm(p, x, dy, dw, mode == GradMode::Accumulate, workspace);
}

}  // namespace dex
