// The inference plan's CUDA pieces (infer/inference_plan.cpp declares them; built only with dex_cuda):
//   conv3d_fprop_two_source  the decoder's conv1 over [up | skip] without a concat copy: fp32, direct (v1: one
//                            thread per output element, taps then channels in order, fp32 accumulation), the
//                            readable oracle for a fused kernel, not a fast one.
//   streams and graphs       the plan's stream; capture of the whole forward into one CUDA graph, replay.
// Opaque void* in the declarations keep CUDA headers out of inference_plan.cpp.
#include <cuda_runtime.h>

#include "kernels/conv3d.h"
#include "kernels/cuda/cuda_runtime.h"

namespace dex {
namespace plan_cuda {

namespace {

struct TwoSourceGeom {
  int N, D, H, W, OD, OH, OW, K, KD, KH, KW, Ca, Cb;
  int stride[3], pad[3], dil[3];
};

// y[m][k] = sum over taps (kd, kh, kw) and channels c < Ca + Cb of src(m, tap)[c] * w[k][tap][c], where src is
// `a` for c < Ca and `b` (channel c - Ca) otherwise. k is the fastest thread index (coalesced stores).
__global__ void conv3d_two_source_kernel_v1(TwoSourceGeom g, const float* __restrict__ a, const float* __restrict__ b,
                                            const float* __restrict__ w, float* __restrict__ y, int64_t total) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int k = int(i % g.K);
  int64_t m = i / g.K;
  const int ow = int(m % g.OW);
  m /= g.OW;
  const int oh = int(m % g.OH);
  m /= g.OH;
  const int od = int(m % g.OD);
  const int n = int(m / g.OD);
  const int C = g.Ca + g.Cb;
  const float* wk = w + int64_t(k) * g.KD * g.KH * g.KW * C;
  float acc = 0.f;
  for (int kd = 0; kd < g.KD; ++kd) {
    const int id = od * g.stride[0] - g.pad[0] + kd * g.dil[0];
    for (int kh = 0; kh < g.KH; ++kh) {
      const int ih = oh * g.stride[1] - g.pad[1] + kh * g.dil[1];
      for (int kw = 0; kw < g.KW; ++kw) {
        const int iw = ow * g.stride[2] - g.pad[2] + kw * g.dil[2];
        const float* wt = wk + ((int64_t(kd) * g.KH + kh) * g.KW + kw) * C;
        if (id < 0 || id >= g.D || ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
        const int64_t v = ((int64_t(n) * g.D + id) * g.H + ih) * g.W + iw;
        const float* av = a + v * g.Ca;
        const float* bv = b + v * g.Cb;
        for (int c = 0; c < g.Ca; ++c) acc = fmaf(av[c], wt[c], acc);
        for (int c = 0; c < g.Cb; ++c) acc = fmaf(bv[c], wt[g.Ca + c], acc);
      }
    }
  }
  y[i] = acc;
}

}  // namespace

void conv3d_fprop_two_source(const Conv3dParams& p, const float* a, int Ca, const float* b, int Cb, const float* w,
                             float* y, void* stream) {
  p.validate();
  DEX_CHECK(Ca > 0 && Cb > 0 && Ca + Cb == p.C, "two-source conv: ", Ca, " + ", Cb, " channels for a conv over ", p.C);
  DEX_CHECK(a && b && w && y, "two-source conv: null pointer");
  TwoSourceGeom g;
  g.N = p.N; g.D = p.D; g.H = p.H; g.W = p.W;
  g.OD = p.OD(); g.OH = p.OH(); g.OW = p.OW();
  g.K = p.K; g.KD = p.KD; g.KH = p.KH; g.KW = p.KW;
  g.Ca = Ca; g.Cb = Cb;
  for (int i = 0; i < 3; ++i) {
    g.stride[i] = p.stride[i];
    g.pad[i] = p.pad[i];
    g.dil[i] = p.dil[i];
  }
  const int64_t total = p.out_elems();
  const int block = 256;
  const int64_t grid = (total + block - 1) / block;
  DEX_CHECK(grid < (int64_t(1) << 31), "two-source conv: ", total, " outputs exceed one grid");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  conv3d_two_source_kernel_v1<<<unsigned(grid), block, 0, s>>>(g, a, b, w, y, total);
  DEX_LAUNCH_CHECK("conv3d_two_source_kernel_v1", s);
}

void* stream_create() {
  cudaStream_t s = nullptr;
  DEX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(void* stream) noexcept { cudaStreamDestroy(static_cast<cudaStream_t>(stream)); }

void capture_begin(void* stream) {
  DEX_CHECK(!sync_check_enabled(), "inference plan: DEX_SYNC_CHECK=1 synchronises after every launch, which a CUDA "
                                   "graph capture does not allow; unset it to run a CUDA plan");
  DEX_CUDA_CHECK(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
}

void* capture_end(void* stream) {
  cudaGraph_t graph = nullptr;
  DEX_CUDA_CHECK(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  DEX_CUDA_CHECK(err);
  return exec;
}

void capture_abort(void* stream) noexcept {
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();  // clear the capture's sticky-free error state for the next call
}

void graph_launch(void* graph, void* stream) {
  DEX_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), static_cast<cudaStream_t>(stream)));
}

void graph_destroy(void* graph) noexcept { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)); }

}  // namespace plan_cuda
}  // namespace dex
