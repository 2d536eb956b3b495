// A PNG preview a person can check a segmentation with: axial, coronal and sagittal slices through the
// mask's centre (or the volume's centre when the mask is empty), CT in the abdominal window, the mask's
// outline in yellow, spleen clicks green, background clicks blue. Radiological convention: the patient's
// right on the viewer's left, anterior (axial, sagittal) and superior (coronal, sagittal) up.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "data/volume.h"

namespace dex {

struct PreviewClick {
  std::array<int64_t, 3> ijk;  // voxel index in the RAS-oriented grid of `ct`
  bool spleen;
};

// ct and mask: the same RAS-oriented grid (axis 0 -> patient's right, 1 -> anterior, 2 -> superior);
// spacing in mm per axis (pixels are stretched to keep anatomy in proportion). Written atomically.
void write_preview_png(const std::string& path, const Volume& ct, const LabelVolume& mask,
                       const std::array<double, 3>& spacing, const std::vector<PreviewClick>& clicks,
                       float window_lo = -175.f, float window_hi = 250.f);

// Low-level: write an 8-bit RGB image (row-major, 3 bytes per pixel), atomically.
void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

}  // namespace dex
