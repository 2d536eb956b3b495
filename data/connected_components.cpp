#include "data/connected_components.h"

#include "kernels/common.h"

namespace dex {

int32_t connected_components_2d(const uint8_t* mask, int64_t H, int64_t W, std::vector<int32_t>& labels) {
  DEX_CHECK(H >= 0 && W >= 0, "connected_components_2d: negative shape ", H, "x", W);
  labels.assign(static_cast<size_t>(H * W), 0);
  std::vector<int64_t> stack;
  int32_t n = 0;
  for (int64_t start = 0; start < H * W; ++start) {
    if (!mask[start] || labels[start]) continue;
    // A new component begins at its first pixel in raster order: flood fill it (explicit stack, no recursion).
    labels[start] = ++n;
    stack.assign(1, start);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t y = p / W, x = p % W;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        const int64_t yy = y + dy;
        if (yy < 0 || yy >= H) continue;
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t xx = x + dx;
          if (xx < 0 || xx >= W) continue;
          const int64_t q = yy * W + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = n;
            stack.push_back(q);
          }
        }
      }
    }
  }
  return n;
}

}  // namespace dex
