// Click simulation for training and validation (spec §8; MONAI apps/deepedit transforms + interaction), on the
// network grid (128^3 in the bundle, any shape here). The label volume's last axis (2) is the "depth" axis whose
// slices the initial seeds use. All randomness comes from a dex::Rng with an explicit seed: numpy's RNG cannot be
// matched bit for bit, so the distributions and every deterministic step are matched instead.
//
// A simulated click is [d, h, w, z]: entry 0 is the chessboard distance of the voxel inside its region ("for debug"
// in MONAI), entries 1..3 the voxel index. [-1,-1,-1,-1] marks a missing component. Only the last three entries
// place the click; a point with any negative entry is skipped when heatmaps are made.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/click_guidance.h"
#include "data/volume.h"
#include "kernels/rng.h"

namespace dex {

// A label name and its value in the (normalised) label map. Order matters: guidance lists and heatmap channels
// follow it. Every label's mask is label == value (background: value 0 in the bundle).
struct LabelName {
  std::string name;
  int value = 0;
  bool is_background() const { return name == "background"; }
};
using LabelNames = std::vector<LabelName>;
// The bundle's label_names: {"spleen": 1, "background": 0}.
LabelNames bundle_label_names();

using SimClick = std::array<int64_t, 4>;         // [distance, h, w, z]
using Guidance = std::vector<std::vector<SimClick>>;  // one list per label, in LabelNames order

// Mask of one label: 1 where label == value (for background as well: value 0 -> label == 0).
std::vector<uint8_t> label_mask(const LabelVolume& label, const LabelName& name);

// FindAllValidSlicesMissingLabelsd: per label, the indices z of the slices label[:, :, z] that contain the label's
// value; ten copies of -1 when there is none.
std::vector<std::vector<int64_t>> find_valid_slices(const LabelVolume& label, const LabelNames& names);

// AddInitialSeedPointMissingLabelsd (connected_regions = 5), per label in order: pick a slice uniformly from its
// valid slices (-1 wraps to the last slice, as numpy indexing does), label the 2D components of the label's mask on
// that slice (8-connectivity); no component -> one [-1,-1,-1,-1]; else for r = 1..regions: empty -> [-1,-1,-1,-1],
// otherwise one pixel drawn with weight exp(d) - 1 (d = 2D chessboard distance) -> [d, h, w, z]. When the component
// fills the whole slice, d = -1 everywhere: the draw is uniform and the click is [-1, h, w, z] (spec §8.1 quirk).
Guidance add_initial_seed_points(const LabelVolume& label, const LabelNames& names,
                                 const std::vector<std::vector<int64_t>>& valid_slices, Rng& rng,
                                 int connected_regions = 5);
// Both steps: the seeds a training/validation sample starts with.
Guidance initial_guidance(const LabelVolume& label, const LabelNames& names, Rng& rng);

// FindDiscrepancyRegionsDeepEditd, per label: positive = gt & !pred (missed), negative = pred & !gt (extra), with
// gt = (label == value), pred = (prediction == value).
struct Discrepancy {
  std::vector<uint8_t> pos, neg;
};
std::vector<Discrepancy> find_discrepancy_regions(const LabelVolume& label, const LabelVolume& pred,
                                                  const LabelNames& names);

// find_guidance: one voxel of `region` (nonzero voxels) drawn with weight exp(d) - 1, d = 3D chessboard distance
// (26-neighbourhood, the border is not outside). Returns false (and draws nothing) for an empty region. A region
// that fills the whole grid has d = -1 everywhere: the draw is uniform and the click is [-1, h, w, z].
bool sample_click(const uint8_t* region, const std::array<int64_t, 3>& shape, Rng& rng, SimClick* click);

// AddRandomGuidanceDeepEditd with probability 1: drop every existing click containing -1; then per label L (in
// order): if L's positive discrepancy is non-empty, add a click sampled from it to L's list; for every label M, if
// |neg_L & mask_M| > 50, add a click sampled from neg_L & mask_M to M's list. Then prune_guidance.
Guidance add_random_guidance(const Guidance& current, const std::vector<Discrepancy>& discrepancy,
                             const LabelVolume& label, const LabelNames& names, Rng& rng);

// Random pruning (Python `random` in MONAI): n = randint(1, 10); repeatedly pick a random label not kept yet and add
// its click count; once the count reaches n, empty the lists of all labels not kept. Lists are kept or emptied
// whole, never truncated.
void prune_guidance(Guidance& guidance, Rng& rng);

// The grid points of one label's clicks for the heatmap: last three entries, points with any negative entry
// (distance included, as MONAI's np.any(point < 0)) skipped.
std::vector<std::array<int, 3>> guidance_points(const std::vector<SimClick>& clicks);
// The click channels (one heatmap per label, LabelNames order) through gaussian_heatmap (data/click_guidance.h).
std::vector<std::vector<float>> guidance_heatmaps(const Guidance& guidance, const std::array<int64_t, 3>& shape,
                                                  float sigma = kGuidanceSigma);

// Rng for the clicks of one sample: a pure function of (seed, epoch, sample index, round); distinct streams for
// sample < 2^20, round < 16, epoch < 2^24.
Rng click_rng(uint64_t seed, uint64_t epoch, uint64_t sample, uint64_t round = 0);

}  // namespace dex
