#include "train/label_resize.h"

#include <array>
#include <vector>

#include "data/resize.h"
#include "kernels/common.h"

namespace dex {

LabelResize parse_label_resize(const std::string& s, const std::string& what) {
  if (s == "nearest") return LabelResize::Nearest;
  if (s == "majority") return LabelResize::Majority;
  throw InputError(str(what, ": label_resize '", s, "' is not \"nearest\" or \"majority\""));
}

const char* label_resize_name(LabelResize r) { return r == LabelResize::Nearest ? "nearest" : "majority"; }

LabelVolume resize_label_majority(const LabelVolume& v, const Shape3& os) {
  const Shape3& is = v.shape;
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size(), "resize_label_majority: data size does not match shape");
  for (int a = 0; a < 3; ++a)
    DEX_CHECK(is[a] > 0 && os[a] > 0, "resize_label_majority: empty input or output extent on axis ", a);
  // The windows of resize_area (adaptive average pooling).
  std::array<std::vector<int64_t>, 3> lo, hi;
  for (int a = 0; a < 3; ++a) {
    lo[a].resize(os[a]);
    hi[a].resize(os[a]);
    for (int64_t o = 0; o < os[a]; ++o) {
      lo[a][o] = (o * is[a]) / os[a];
      hi[a][o] = ((o + 1) * is[a] + os[a] - 1) / os[a];
    }
  }
  LabelVolume r;
  r.shape = os;
  r.affine = resize_affine(v.affine, is, os);
  r.data.resize(static_cast<size_t>(r.size()));
  std::array<int64_t, 256> count{};
  for (int64_t o0 = 0; o0 < os[0]; ++o0)
    for (int64_t o1 = 0; o1 < os[1]; ++o1)
      for (int64_t o2 = 0; o2 < os[2]; ++o2) {
        count.fill(0);
        for (int64_t i0 = lo[0][o0]; i0 < hi[0][o0]; ++i0)
          for (int64_t i1 = lo[1][o1]; i1 < hi[1][o1]; ++i1)
            for (int64_t i2 = lo[2][o2]; i2 < hi[2][o2]; ++i2) ++count[v.at(i0, i1, i2)];
        int best = 0;
        for (int l = 1; l < 256; ++l)
          if (count[l] > count[best]) best = l;
        r.at(o0, o1, o2) = static_cast<uint8_t>(best);
      }
  return r;
}

LabelVolume resize_label(const LabelVolume& v, const Shape3& out_shape, LabelResize mode) {
  return mode == LabelResize::Nearest ? resize_nearest(v, out_shape) : resize_label_majority(v, out_shape);
}

}  // namespace dex
