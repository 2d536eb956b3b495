// The whole inference pre- and post-processing (spec §3, §5): file Volume -> network input, and network output ->
// spleen probability and mask in the file's grid and affine.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/click_guidance.h"
#include "data/clicks.h"
#include "data/nifti_io.h"
#include "data/orientation.h"
#include "data/volume.h"

namespace dex {

struct PreprocessOptions {
  std::array<int64_t, 3> spatial_size{128, 128, 128};
  float a_min = -175.f, a_max = 250.f, b_min = 0.f, b_max = 1.f;
  float sigma = kGuidanceSigma;
  bool bundle_compat = false;  // click mapping with the bundle's §13.2 quirk (tests only)
};

// Everything needed to map clicks and to invert the output back to the file.
struct PreprocessRecord {
  GridGeometry geometry;
  PreprocessOptions options;
};

struct Preprocessed {
  Volume ct;  // windowed CT at spatial_size (RAS-oriented axes), affine = oriented affine scaled by the resize
  PreprocessRecord record;
};

// Wall time of each preprocessing stage (dex-infer --timing).
struct PreprocessTimes {
  double orient_ms = 0, window_ms = 0, resize_ms = 0;
};
// file Volume (as read) -> orient to RAS -> window -> area resize.
Preprocessed preprocess_image(const Volume& file_volume, const PreprocessOptions& opt = {},
                              PreprocessTimes* times = nullptr);

struct GridClicks {
  std::vector<GridPoint> spleen, background;
};
// Validates the clicks against the file shape (InputError naming the click), then maps them.
GridClicks map_clicks(const Clicks& clicks, const PreprocessRecord& rec, ClickStages* spleen_stages = nullptr,
                      ClickStages* background_stages = nullptr);

// Network input, NDHWC with C = 3 (CT, spleen heatmap, background heatmap): size D*H*W*3.
std::vector<float> assemble_input_ndhwc(const Volume& ct, const GridClicks& clicks, float sigma = kGuidanceSigma);
// Same values in C order (3, D, H, W) (the fixtures' layout).
std::vector<float> assemble_input_cdhw(const Volume& ct, const GridClicks& clicks, float sigma = kGuidanceSigma);

enum class OutputLayout { NDHWC, NCDHW };

struct Postprocessed {
  Volume prob_spleen;  // file grid, file affine
  LabelVolume mask;    // argmax (1 where spleen probability > background probability)
};
// 2-channel logits on the spatial_size grid -> softmax -> area resize back to the oriented shape -> inverse orientation
// -> argmax in the file grid.
Postprocessed postprocess_logits(const float* logits, OutputLayout layout, const PreprocessRecord& rec);
// Same from 2-channel probabilities (softmax already applied).
Postprocessed postprocess_probabilities(const float* probs, OutputLayout layout, const PreprocessRecord& rec);

}  // namespace dex
