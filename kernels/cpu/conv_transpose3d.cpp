// conv_transpose3d on the CPU, fp32, NDHWC activations, weights [K][KD][KH][KW][C] (K = output channels).
// Variants (CpuConvImpl):
//   Reference  plain nested loops with a double accumulator (gather form for fprop), exact adjoints for dgrad
//              and wgrad. The spec; never optimised.
//   Gemm       (default) kernel == stride, no padding (every DynUNet up-sampling): per chunk of input voxels one
//              sgemm into a [voxel][tap][K] panel, then its scatter (each output voxel written once); OpenMP
//              threads take whole chunks, each with its own panel and a single-threaded sgemm.
//              Any other kernel/stride/padding: the transposed conv is conv3d's dgrad on the swapped weights
//              ([C][taps][K]), so it reuses conv3d's Gemm dgrad (sgemm + col2im). dgrad = conv3d Gemm fprop,
//              wgrad = conv3d Gemm wgrad (then swapped back), on the same swapped problem.
// ConvTranspose3dParams::validate lives here too.
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/conv_transpose3d.h"
#include "kernels/cpu/conv3d_gemm.h"

namespace dex {

void ConvTranspose3dParams::validate() const {
  DEX_CHECK(N > 0 && C > 0 && K > 0, "conv_transpose3d: N, C, K must be positive, got N=", N, " C=", C, " K=", K);
  DEX_CHECK(D > 0 && H > 0 && W > 0, "conv_transpose3d: input extent must be positive, got D=", D, " H=", H,
            " W=", W);
  DEX_CHECK(KD > 0 && KH > 0 && KW > 0, "conv_transpose3d: kernel size must be positive, got ", KD, "x", KH, "x",
            KW);
  for (int a = 0; a < 3; ++a) {
    DEX_CHECK(stride[a] > 0, "conv_transpose3d: stride[", a, "] must be positive, got ", stride[a]);
    DEX_CHECK(pad[a] >= 0, "conv_transpose3d: padding[", a, "] must be >= 0, got ", pad[a]);
  }
  DEX_CHECK(OD() > 0 && OH() > 0 && OW() > 0, "conv_transpose3d: output extent must be positive, got ", OD(), "x",
            OH(), "x", OW(), " for input ", D, "x", H, "x", W, " kernel ", KD, "x", KH, "x", KW, " padding ", pad[0],
            ",", pad[1], ",", pad[2]);
}

namespace {

// ---------------------------------------------------------------------------------------------------------
// Reference
// ---------------------------------------------------------------------------------------------------------

// Input index along one axis that output index o and tap t come from; -1 when none.
inline int in_index(int o, int t, int stride, int pad, int in_extent) {
  const int num = o + pad - t;
  if (num < 0 || num % stride != 0) return -1;
  const int i = num / stride;
  return i < in_extent ? i : -1;
}

void conv_transpose3d_fprop_reference(const ConvTranspose3dParams& p, const float* x, const float* w, float* y) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int n = 0; n < p.N; ++n)
    for (int od = 0; od < OD; ++od)
      for (int oh = 0; oh < OH; ++oh)
        for (int ow = 0; ow < OW; ++ow)
          for (int k = 0; k < p.K; ++k) {
            double acc = 0;
            for (int kd = 0; kd < p.KD; ++kd) {
              const int id = in_index(od, kd, p.stride[0], p.pad[0], p.D);
              if (id < 0) continue;
              for (int kh = 0; kh < p.KH; ++kh) {
                const int ih = in_index(oh, kh, p.stride[1], p.pad[1], p.H);
                if (ih < 0) continue;
                for (int kw = 0; kw < p.KW; ++kw) {
                  const int iw = in_index(ow, kw, p.stride[2], p.pad[2], p.W);
                  if (iw < 0) continue;
                  const float* xv = x + ((((int64_t)n * p.D + id) * p.H + ih) * p.W + iw) * p.C;
                  const float* wv = w + ((((int64_t)k * p.KD + kd) * p.KH + kh) * p.KW + kw) * p.C;
                  for (int c = 0; c < p.C; ++c) acc += double(xv[c]) * double(wv[c]);
                }
              }
            }
            y[((((int64_t)n * OD + od) * OH + oh) * OW + ow) * p.K + k] = float(acc);
          }
}

void conv_transpose3d_dgrad_reference(const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx,
                                      GradMode mode) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int n = 0; n < p.N; ++n)
    for (int id = 0; id < p.D; ++id)
      for (int ih = 0; ih < p.H; ++ih)
        for (int iw = 0; iw < p.W; ++iw)
          for (int c = 0; c < p.C; ++c) {
            double acc = 0;
            for (int kd = 0; kd < p.KD; ++kd) {
              const int od = id * p.stride[0] - p.pad[0] + kd;
              if (od < 0 || od >= OD) continue;
              for (int kh = 0; kh < p.KH; ++kh) {
                const int oh = ih * p.stride[1] - p.pad[1] + kh;
                if (oh < 0 || oh >= OH) continue;
                for (int kw = 0; kw < p.KW; ++kw) {
                  const int ow = iw * p.stride[2] - p.pad[2] + kw;
                  if (ow < 0 || ow >= OW) continue;
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

void conv_transpose3d_wgrad_reference(const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw,
                                      GradMode mode) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  for (int k = 0; k < p.K; ++k)
    for (int kd = 0; kd < p.KD; ++kd)
      for (int kh = 0; kh < p.KH; ++kh)
        for (int kw = 0; kw < p.KW; ++kw)
          for (int c = 0; c < p.C; ++c) {
            double acc = 0;
            for (int n = 0; n < p.N; ++n)
              for (int id = 0; id < p.D; ++id) {
                const int od = id * p.stride[0] - p.pad[0] + kd;
                if (od < 0 || od >= OD) continue;
                for (int ih = 0; ih < p.H; ++ih) {
                  const int oh = ih * p.stride[1] - p.pad[1] + kh;
                  if (oh < 0 || oh >= OH) continue;
                  for (int iw = 0; iw < p.W; ++iw) {
                    const int ow = iw * p.stride[2] - p.pad[2] + kw;
                    if (ow < 0 || ow >= OW) continue;
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

// The conv3d whose dgrad is this transposed conv: its input is our output, its K is our C.
Conv3dParams as_conv(const ConvTranspose3dParams& p) {
  Conv3dParams c;
  c.N = p.N;
  c.C = p.K;
  c.K = p.C;
  c.D = p.OD();
  c.H = p.OH();
  c.W = p.OW();
  c.KD = p.KD;
  c.KH = p.KH;
  c.KW = p.KW;
  for (int a = 0; a < 3; ++a) {
    c.stride[a] = p.stride[a];
    c.pad[a] = p.pad[a];
  }
  return c;
}

// dst[b][t][a] = src[a][t][b] for src of shape [A][T][B].
std::vector<float> swap_outer_inner(const float* src, int A, int64_t T, int B) {
  std::vector<float> dst(size_t(A) * T * B);
  for (int a = 0; a < A; ++a)
    for (int64_t t = 0; t < T; ++t)
      for (int b = 0; b < B; ++b) dst[(b * T + t) * A + a] = src[(a * T + t) * B + b];
  return dst;
}

bool kernel_is_stride(const ConvTranspose3dParams& p) {
  return p.KD == p.stride[0] && p.KH == p.stride[1] && p.KW == p.stride[2] && p.pad[0] == 0 && p.pad[1] == 0 &&
         p.pad[2] == 0;
}

// kernel == stride, no padding: y[n, i*s + t][k] = sum_c x[n, i][c] * w[k][t][c]; every output written once.
void conv_transpose3d_fprop_gemm_k_eq_s(const ConvTranspose3dParams& p, const float* x, const float* w, float* y) {
  const int64_t T = p.taps(), TK = T * p.K;
  // wr[t][k][c] = w[k][t][c], so a panel row is [t][k] and each tap's K outputs are contiguous.
  std::vector<float> wr(size_t(p.weight_elems()));
  for (int k = 0; k < p.K; ++k)
    for (int64_t t = 0; t < T; ++t) std::memcpy(&wr[(t * p.K + k) * p.C], w + (k * T + t) * p.C, sizeof(float) * p.C);
  const int64_t M = int64_t(p.N) * p.D * p.H * p.W;
  const int64_t step = std::min<int64_t>(M, std::max<int64_t>(1, int64_t(kConvChunkBytes / sizeof(float)) / TK));
  const int64_t chunks = (M + step - 1) / step;
  const int threads = int(std::min<int64_t>(detail::fprop_threads(), chunks));
  std::vector<float> panels(size_t(threads * step * TK));
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  detail::BlasSingleThread single;
  // Each OpenMP thread takes whole chunks: a single-threaded sgemm into its own panel, then its scatter.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t m0 = i * step, rows = std::min(step, M - m0);
    float* panel = panels.data() + int64_t(omp_get_thread_num()) * step * TK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(TK), p.C, 1.f, x + m0 * p.C, p.C, wr.data(),
                p.C, 0.f, panel, int(TK));
    for (int64_t r = 0; r < rows; ++r) {
      int64_t m = m0 + r;
      const int iw = int(m % p.W);
      m /= p.W;
      const int ih = int(m % p.H);
      m /= p.H;
      const int id = int(m % p.D);
      const int n = int(m / p.D);
      const float* src = panel + r * TK;
      for (int kd = 0; kd < p.KD; ++kd)
        for (int kh = 0; kh < p.KH; ++kh) {
          const int64_t orow = (((int64_t)n * OD + id * p.stride[0] + kd) * OH + ih * p.stride[1] + kh) * OW;
          // taps kw = 0..KW-1 land on adjacent output voxels: one contiguous run of KW*K floats.
          std::memcpy(y + (orow + int64_t(iw) * p.stride[2]) * p.K, src + (int64_t(kd) * p.KH + kh) * p.KW * p.K,
                      sizeof(float) * p.KW * p.K);
        }
    }
  }
}

}  // namespace

void conv_transpose3d_fprop_cpu(const ConvTranspose3dParams& p, const float* x, const float* w, float* y,
                                CpuConvImpl impl) {
  p.validate();
  DEX_CHECK(x && w && y, "conv_transpose3d_fprop_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference) {
    conv_transpose3d_fprop_reference(p, x, w, y);
  } else if (kernel_is_stride(p)) {
    conv_transpose3d_fprop_gemm_k_eq_s(p, x, w, y);
  } else {
    const std::vector<float> ws = swap_outer_inner(w, p.K, p.taps(), p.C);
    detail::conv3d_dgrad_gemm(as_conv(p), x, ws.data(), y, false, nullptr);
  }
}

void conv_transpose3d_dgrad_cpu(const ConvTranspose3dParams& p, const float* dy, const float* w, float* dx,
                                GradMode mode, CpuConvImpl impl) {
  p.validate();
  DEX_CHECK(dy && w && dx, "conv_transpose3d_dgrad_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference) {
    conv_transpose3d_dgrad_reference(p, dy, w, dx, mode);
  } else {
    const std::vector<float> ws = swap_outer_inner(w, p.K, p.taps(), p.C);
    detail::conv3d_fprop_gemm(as_conv(p), dy, ws.data(), dx, mode == GradMode::Accumulate, nullptr);
  }
}

void conv_transpose3d_wgrad_cpu(const ConvTranspose3dParams& p, const float* x, const float* dy, float* dw,
                                GradMode mode, CpuConvImpl impl) {
  p.validate();
  DEX_CHECK(x && dy && dw, "conv_transpose3d_wgrad_cpu: null tensor pointer");
  if (impl == CpuConvImpl::Reference) {
    conv_transpose3d_wgrad_reference(p, x, dy, dw, mode);
    return;
  }
  // The conv3d view's weight gradient is [C][taps][K]; swap it back to [K][taps][C].
  std::vector<float> dwc(size_t(p.weight_elems()));
  detail::conv3d_wgrad_gemm(as_conv(p), dy, x, dwc.data(), false, nullptr);
  const std::vector<float> back = swap_outer_inner(dwc.data(), p.C, p.taps(), p.K);
  if (mode == GradMode::Accumulate)
    for (size_t i = 0; i < back.size(); ++i) dw[i] += back[i];
  else
    std::memcpy(dw, back.data(), sizeof(float) * back.size());
}

}  // namespace dex
