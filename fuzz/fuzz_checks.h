// What each fuzz target does with one input, shared with the unit tests that replay the committed seeds and
// regressions (tests/data/test_fuzz_regressions.cpp). Bad input must end in dex::InputError (the callers catch it);
// a broken invariant throws std::logic_error, and any other exception, crash or sanitizer report is a finding.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "data/clicks.h"
#include "data/orientation.h"
#include "kernels/common.h"
#include "layers/dynunet.h"
#include "layers/model_file.h"

namespace dex::fuzz {

// A model file: read it (safetensors + metadata, or a torch.save zip), then load it into the network its metadata
// describes when that network is small (a fuzzed architecture can ask for any width, depth or kernel size).
inline void check_model_file(const std::string& path) {
  const LoadedModel m = load_model(path);
  for (const auto& [name, t] : m.weights)
    if (static_cast<int64_t>(t.data.size()) != t.numel()) throw std::logic_error("tensor " + name + ": shape lies");
  int64_t width = 0, taps = 0;
  for (int64_t c : m.info.arch.filters) width = std::max(width, c);
  for (const auto& k : m.info.arch.kernel_sizes) taps = std::max<int64_t>(taps, int64_t(k[0]) * k[1] * k[2]);
  for (const auto& k : m.info.arch.upsample_kernel_sizes) taps = std::max<int64_t>(taps, int64_t(k[0]) * k[1] * k[2]);
  if (m.info.arch.filters.size() <= 6 && width <= 64 && taps <= 125 && m.info.arch.in_channels <= 8 &&
      m.info.arch.out_channels <= 8) {
    DynUNet net(m.info.arch);
    load_weights_into(net, m, path);
  }
}

// Click JSON: parse, validate against a small LPS-like file with permuted axes, map onto the network grid; valid
// clicks must land on the grid.
inline void check_clicks(const std::string& text) {
  static const GridGeometry g = [] {
    GridGeometry r;
    Volume v;
    v.shape = {7, 5, 9};
    v.data.assign(7 * 5 * 9, 0.f);
    v.affine = mat4_identity();
    v.affine[0][0] = 0, v.affine[0][1] = -1.5, v.affine[1][0] = -2.0, v.affine[1][1] = 0;
    r.file_shape = v.shape;
    r.file_affine = v.affine;
    r.orientation = ras_orientation(v.affine);
    const Volume o = reorient(v, r.orientation);
    r.oriented_shape = o.shape;
    r.oriented_affine = o.affine;
    r.spatial_size = {4, 6, 8};
    return r;
  }();
  const Clicks c = parse_clicks(text, "fuzz");
  validate_clicks(c, g.file_shape, "fuzz");
  for (const auto* list : {&c.spleen, &c.background}) {
    const auto pts = map_clicks_to_grid(*list, g);
    if (pts.size() != list->size()) throw std::logic_error("map_clicks_to_grid lost or added clicks");
    for (const auto& p : pts)
      for (int a = 0; a < 3; ++a)
        if (p[a] < 0 || p[a] >= g.spatial_size[a]) throw std::logic_error("a valid click left the grid");
  }
}

}  // namespace dex::fuzz
