#include "data/augment.h"

#include "kernels/common.h"

namespace dex {

Orientation rot90_orientation(int k) {
  Orientation o;
  switch (((k % 4) + 4) % 4) {
    case 1:  // out[i, j] = in[j, n1-1-i]
      o.perm[0] = 1; o.perm[1] = 0; o.flip[0] = true;
      break;
    case 2:  // out[i, j] = in[n0-1-i, n1-1-j]
      o.flip[0] = o.flip[1] = true;
      break;
    case 3:  // out[i, j] = in[n0-1-j, i]
      o.perm[0] = 1; o.perm[1] = 0; o.flip[1] = true;
      break;
    default: break;
  }
  return o;
}

Orientation AugmentDraw::spatial() const {
  // out -> (rotation) -> mid -> (flips) -> in; flips keep the shape, so in[perm[a]] is flipped when exactly one of
  // the rotation's flip[a] and the flip of axis perm[a] is set.
  Orientation r = rot90_orientation(rot90_k), o;
  for (int a = 0; a < 3; ++a) {
    o.perm[a] = r.perm[a];
    o.flip[a] = r.flip[a] != flip[r.perm[a]];
  }
  return o;
}

AugmentDraw draw_augment(Rng& rng, const AugmentOptions& opt) {
  AugmentDraw d;
  for (int a = 0; a < 3; ++a) d.flip[a] = rng.uniform() < opt.flip_prob;
  const bool rotate = rng.uniform() < opt.rot90_prob;
  const int k = 1 + static_cast<int>(rng.below(static_cast<uint64_t>(opt.rot90_max_k)));
  d.rot90_k = rotate ? k : 0;
  d.shift = rng.uniform() < opt.shift_prob;
  const double u = rng.uniform();
  d.offset = d.shift ? static_cast<float>(-opt.shift_offset + 2.0 * opt.shift_offset * u) : 0.f;
  return d;
}

Rng augment_rng(uint64_t seed, uint64_t epoch, uint64_t sample) {
  return Rng(seed, rng_stream(RngStream::Augment, (epoch << 24) ^ sample));
}

void apply_augment(const AugmentDraw& draw, Volume& image, LabelVolume& label) {
  DEX_CHECK(image.shape == label.shape, "apply_augment: image ", image.shape[0], "x", image.shape[1], "x",
            image.shape[2], " and label ", label.shape[0], "x", label.shape[1], "x", label.shape[2], " differ");
  const Orientation o = draw.spatial();
  if (!o.is_identity()) {
    image = reorient(image, o);
    label = reorient(label, o);
  }
  if (draw.shift)
    for (float& v : image.data) v += draw.offset;
}

}  // namespace dex
