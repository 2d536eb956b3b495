// Click files and the mapping of clicks to the network grid (spec §3.5, §3.6, §3.8, §6).
// Click file: {"image"?: "ct.nii.gz", "spleen": [[i,j,k], ...], "background": [...]}, voxel indices in the file's own
// array order (floats allowed). Mapping: q = inv(A_ras) A_file [p,1] (float) -> trunc -> x factor1 -> trunc ->
// x factor2 -> trunc. The bundle (bundle_compat = true) uses factor1 = oriented/file shape and factor2 =
// spatial_size/file shape, both per axis in the FILE's axis order (spec §13.2: wrong for axis-permuting orientations).
// dex (default) uses factor1 = 1 and factor2 = spatial_size/oriented shape, so clicks land where the user clicked.
// For flip-only orientations the two agree exactly.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/orientation.h"
#include "data/volume.h"

namespace dex {

using Click = std::array<double, 3>;
using GridPoint = std::array<int, 3>;

struct Clicks {
  std::string image;               // optional "image" entry ("" if absent)
  std::vector<Click> spleen;
  std::vector<Click> background;
  bool empty() const { return spleen.empty() && background.empty(); }
};

// Parses click JSON text; `source` names it in errors. Unknown keys (anything but image, spleen and background),
// non-numeric or wrong-length points, non-finite values -> InputError naming the click.
Clicks parse_clicks(const std::string& json_text, const std::string& source = "clicks");
Clicks read_clicks(const std::string& path);
// Every click must satisfy 0 <= index < shape on its axis (file array order) -> else InputError naming the click.
void validate_clicks(const Clicks& clicks, const std::array<int64_t, 3>& file_shape, const std::string& source = "clicks");

// What the mapping needs to know about the image.
struct GridGeometry {
  std::array<int64_t, 3> file_shape{0, 0, 0};
  Mat4 file_affine = mat4_identity();
  Orientation orientation;
  std::array<int64_t, 3> oriented_shape{0, 0, 0};
  Mat4 oriented_affine = mat4_identity();
  std::array<int64_t, 3> spatial_size{128, 128, 128};
};

// The clicks of one label after each mapping stage (for tests against the bundle's guidance_by_stage).
struct ClickStages {
  std::vector<Click> after_reorient;             // float
  std::vector<GridPoint> after_add_guidance;     // trunc, x factor1, trunc
  std::vector<GridPoint> after_resize_guidance;  // x factor2, trunc  (= the grid points)
};

std::vector<GridPoint> map_clicks_to_grid(const std::vector<Click>& clicks, const GridGeometry& g,
                                          bool bundle_compat = false, ClickStages* stages = nullptr);

}  // namespace dex
