// stream_workspace() (kernels/cuda/split_cuda.h): per-stream grow-only device scratch for the split reductions.
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels/arena.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/cuda/split_cuda.h"

namespace dex {

void* stream_workspace(cudaStream_t stream, size_t bytes) {
  struct Slot {
    std::vector<Buffer> blocks;  // the last one is current; older ones stay alive (graphs may still use them)
  };
  // Deliberately never destroyed: a static destructor would run after the CUDA runtime has shut down.
  static std::mutex mu;
  static auto* slots = new std::map<std::pair<int, cudaStream_t>, Slot>();
  int device = 0;  // the default stream handle (nullptr) is one per device
  DEX_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  Slot& slot = (*slots)[{device, stream}];
  if (slot.blocks.empty() || slot.blocks.back().size() < bytes) {
    size_t size = 4096;
    while (size < bytes) size *= 2;  // geometric growth: all blocks of a stream add up to < 2x the largest
    slot.blocks.emplace_back(cuda_allocator(), size);
  }
  return slot.blocks.back().data();
}

}  // namespace dex
