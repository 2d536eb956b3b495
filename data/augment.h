// Training augmentation (spec §7 random_transforms), applied after the cache to the RAS-oriented, windowed volumes:
// RandFlipd on axes 0, 1, 2 (p = 0.1 each), RandRotate90d (p = 0.1, k uniform in {1,2,3}, plane of axes (0,1),
// numpy/torch rot90 direction), RandShiftIntensityd (p = 0.5, one offset uniform in [-0.1, 0.1] added to the whole
// image, no re-clipping). The same draw moves image and label. All draws come from one dex::Rng that is a pure
// function of (seed, epoch, sample index), so an epoch can be replayed.
#pragma once
#include <cstdint>

#include "data/orientation.h"
#include "data/volume.h"
#include "kernels/rng.h"

namespace dex {

struct AugmentOptions {
  double flip_prob = 0.1;   // per axis
  double rot90_prob = 0.1;
  int rot90_max_k = 3;      // k uniform in {1..max_k}
  double shift_prob = 0.5;
  double shift_offset = 0.1;  // offset uniform in [-shift_offset, shift_offset]
};

struct AugmentDraw {
  bool flip[3] = {false, false, false};
  int rot90_k = 0;       // 0: no rotation
  bool shift = false;
  float offset = 0.f;    // added when shift
  // The flips then the rotation as one axis map (out index -> in index), for data/orientation.h's reorient().
  Orientation spatial() const;
  bool is_spatial_identity() const { return spatial().is_identity(); }
};

// Always consumes the same number of draws (7), whatever the outcome, in MONAI's order: flip0, flip1, flip2,
// rotate (do?, k), shift (do?, offset).
AugmentDraw draw_augment(Rng& rng, const AugmentOptions& opt = {});
// Distinct streams for sample < 2^24 and epoch < 2^24.
Rng augment_rng(uint64_t seed, uint64_t epoch, uint64_t sample);

// numpy.rot90(m, k, axes=(0,1)) as an Orientation (k taken mod 4).
Orientation rot90_orientation(int k);

// Applies the draw: image and label get the same flips/rotation (their affines follow, so world coordinates are
// kept), the image gets the intensity shift. Image and label must have the same shape.
void apply_augment(const AugmentDraw& draw, Volume& image, LabelVolume& label);

}  // namespace dex
