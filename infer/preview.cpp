#include "infer/preview.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kernels/common.h"

namespace dex {

void write_png_rgb(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  DEX_CHECK(width > 0 && height > 0 && rgb.size() == size_t(width) * height * 3, "bad image buffer");
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  DEX_INPUT_CHECK(f != nullptr, "cannot write preview '", path, "': cannot create ", tmp);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    std::remove(tmp.c_str());
    throw InputError(str("cannot write preview '", path, "': libpng failed"));
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, const_cast<png_bytep>(rgb.data() + size_t(y) * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  bool ok = std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw InputError(str("cannot write preview '", path, "'"));
  }
}

namespace {

// One panel: a 2D slice with (col, row) -> voxel mapping, rendered at `scale` pixels per mm.
struct Panel {
  int axis_u, axis_v;  // volume axes along columns and rows
  bool flip_u, flip_v;
  int fixed_axis;
  int64_t fixed_index;
};

std::array<int64_t, 3> mask_centre(const LabelVolume& m) {
  double s[3] = {0, 0, 0};
  int64_t n = 0;
  for (int64_t i = 0; i < m.shape[0]; ++i)
    for (int64_t j = 0; j < m.shape[1]; ++j)
      for (int64_t k = 0; k < m.shape[2]; ++k)
        if (m.at(i, j, k)) {
          s[0] += double(i);
          s[1] += double(j);
          s[2] += double(k);
          ++n;
        }
  if (n == 0) return {m.shape[0] / 2, m.shape[1] / 2, m.shape[2] / 2};
  return {int64_t(s[0] / n + 0.5), int64_t(s[1] / n + 0.5), int64_t(s[2] / n + 0.5)};
}

}  // namespace

void write_preview_png(const std::string& path, const Volume& ct, const LabelVolume& mask,
                       const std::array<double, 3>& spacing, const std::vector<PreviewClick>& clicks, float window_lo,
                       float window_hi) {
  DEX_CHECK(ct.shape == mask.shape, "preview: CT and mask grids differ");
  DEX_CHECK(ct.size() > 0, "preview: empty volume");
  auto c = mask_centre(mask);
  // axial: columns = axis 0 flipped (patient's right on the left), rows = axis 1 flipped (anterior up)
  // coronal: columns = axis 0 flipped, rows = axis 2 flipped (superior up)
  // sagittal: columns = axis 1 flipped (anterior on the left), rows = axis 2 flipped
  const Panel panels[3] = {{0, 1, true, true, 2, c[2]}, {0, 2, true, true, 1, c[1]}, {1, 2, true, true, 0, c[0]}};
  double mm_min = std::max(1e-3, std::min({spacing[0], spacing[1], spacing[2]}));
  double extent_max = 0;
  for (int a = 0; a < 3; ++a) extent_max = std::max(extent_max, double(ct.shape[a]) * spacing[a]);
  double px_per_mm = std::min(1.0 / mm_min * 2.0, 320.0 / extent_max);  // at most 320 px per panel side
  const int gap = 4;
  int widths[3], heights[3], total_w = 0, max_h = 0;
  for (int p = 0; p < 3; ++p) {
    widths[p] = std::max(1, int(std::lround(ct.shape[panels[p].axis_u] * spacing[panels[p].axis_u] * px_per_mm)));
    heights[p] = std::max(1, int(std::lround(ct.shape[panels[p].axis_v] * spacing[panels[p].axis_v] * px_per_mm)));
    total_w += widths[p] + (p ? gap : 0);
    max_h = std::max(max_h, heights[p]);
  }
  std::vector<uint8_t> rgb(size_t(total_w) * max_h * 3, 0);
  int x0 = 0;
  for (int p = 0; p < 3; ++p) {
    const Panel& pn = panels[p];
    auto voxel_of = [&](int x, int y, std::array<int64_t, 3>& v) {
      int64_t nu = ct.shape[pn.axis_u], nv = ct.shape[pn.axis_v];
      int64_t u = std::min<int64_t>(nu - 1, int64_t(double(x) / widths[p] * nu));
      int64_t w = std::min<int64_t>(nv - 1, int64_t(double(y) / heights[p] * nv));
      if (pn.flip_u) u = nu - 1 - u;
      if (pn.flip_v) w = nv - 1 - w;
      v[pn.axis_u] = u;
      v[pn.axis_v] = w;
      v[pn.fixed_axis] = std::clamp<int64_t>(pn.fixed_index, 0, ct.shape[pn.fixed_axis] - 1);
    };
    for (int y = 0; y < heights[p]; ++y)
      for (int x = 0; x < widths[p]; ++x) {
        std::array<int64_t, 3> v;
        voxel_of(x, y, v);
        float hu = ct.at(v[0], v[1], v[2]);
        float g = std::clamp((hu - window_lo) / (window_hi - window_lo), 0.f, 1.f);
        uint8_t grey = uint8_t(std::lround(g * 255));
        uint8_t* px = &rgb[(size_t(y) * total_w + x0 + x) * 3];
        px[0] = px[1] = px[2] = grey;
        // outline: inside the mask with a 4-neighbour (in this panel) outside it
        if (mask.at(v[0], v[1], v[2])) {
          bool edge = false;
          const int dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
          for (int q = 0; q < 4 && !edge; ++q) {
            int xx = x + dx[q], yy = y + dy[q];
            if (xx < 0 || yy < 0 || xx >= widths[p] || yy >= heights[p]) continue;
            std::array<int64_t, 3> w;
            voxel_of(xx, yy, w);
            edge = !mask.at(w[0], w[1], w[2]);
          }
          if (edge) {
            px[0] = 255;
            px[1] = 220;
            px[2] = 0;
          } else {
            px[0] = uint8_t(std::min(255, grey + 40));
          }
        }
      }
    // clicks: a filled disc where the click lies within 2 voxels of this slice
    for (const auto& ck : clicks) {
      if (std::llabs(ck.ijk[pn.fixed_axis] - pn.fixed_index) > 2) continue;
      int64_t nu = ct.shape[pn.axis_u], nv = ct.shape[pn.axis_v];
      int64_t u = ck.ijk[pn.axis_u], w = ck.ijk[pn.axis_v];
      if (pn.flip_u) u = nu - 1 - u;
      if (pn.flip_v) w = nv - 1 - w;
      double cx = (u + 0.5) / nu * widths[p], cy = (w + 0.5) / nv * heights[p];
      for (int y = int(cy) - 4; y <= int(cy) + 4; ++y)
        for (int x = int(cx) - 4; x <= int(cx) + 4; ++x) {
          if (x < 0 || y < 0 || x >= widths[p] || y >= heights[p]) continue;
          if ((x - cx) * (x - cx) + (y - cy) * (y - cy) > 12) continue;
          uint8_t* px = &rgb[(size_t(y) * total_w + x0 + x) * 3];
          px[0] = 0;
          px[1] = ck.spleen ? 230 : 90;
          px[2] = ck.spleen ? 60 : 255;
        }
    }
    x0 += widths[p] + gap;
  }
  write_png_rgb(path, total_w, max_h, rgb);
}

}  // namespace dex
