// conv3d fprop v3: implicit GEMM on Hopper wgmma (sm_90a), NDHWC activations, KTRSC weights, f16 / bf16 storage,
// fp32 accumulation (kernels/cuda/conv3d_wgmma.cu; index maps in conv3d_wgmma_layout.h). A selectable variant next
// to v1 / v2 of conv3d.cu; the dispatcher there decides when to call it.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "kernels/common.h"
#include "kernels/conv3d.h"

namespace dex {

// Shape / dtype check (no device query): f16 or bf16, C % 32 == 0 (k-step 64 channels when C % 64 == 0, else 32),
// K % 32 == 0 (N tile 256 / 128 / 64 / 32, the largest dividing K), any kernel size, stride, padding and dilation.
// The DynUNet's C = 3 input layer and its K = 2 output layer stay on v1/v2. `why` receives the reason when false.
bool conv3d_fprop_wgmma_supports(const Conv3dParams& p, DType dtype, std::string* why = nullptr);

// Whether ConvVariant::Best takes v3 for this shape on an sm_90 device (a pure shape rule, testable without a GPU):
// v3 supports it and C >= 64 or K >= 64. Measured on an H100 (bench/results/NVIDIA-H100-80GB-HBM3-2026-11-27.md):
// v3 beat v2 on every DynUNet fprop layer at 128^3 but the two 32 -> 32 ones (v2 1131 vs v3 1414 us, 1150 vs 1390).
bool conv3d_fprop_best_is_wgmma(const Conv3dParams& p, DType dtype);

// y = conv3d(x, w) on the current device, which must be sm_90 (H100 / H200; the kernel is built for sm_90a only);
// x, w, y 16-byte aligned device pointers in `dtype` storage. Throws dex::Error naming the problem otherwise.
void conv3d_fprop_wgmma(const Conv3dParams& p, DType dtype, const void* x, const void* w, void* y,
                        cudaStream_t stream = nullptr);

}  // namespace dex
