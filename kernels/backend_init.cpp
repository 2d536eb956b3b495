// The one place that branches on CUDA being built (STYLE.md §6). CMake compiles this file with
// DEX_HAVE_CUDA=1 when the dex_cuda library exists.
#include "kernels/backend.h"

namespace dex {
void register_cpu_backend();                        // kernels/cpu/backend_cpu.cpp
void set_backend_unavailable_reason(Device d, const std::string& why);  // kernels/backend.cpp
#if defined(DEX_HAVE_CUDA)
// kernels/cuda/backend_cuda.cpp: registers the CUDA table when a device is present, else returns why not.
bool register_cuda_backend(std::string* why_not);
#endif

void init_builtin_backends() {
  register_cpu_backend();
#if defined(DEX_HAVE_CUDA)
  std::string why;
  if (!register_cuda_backend(&why)) set_backend_unavailable_reason(Device::CUDA, why);
#endif
}
}  // namespace dex
