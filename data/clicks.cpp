#include "data/clicks.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/common.h"

namespace dex {
namespace {

std::string point_text(const Click& p) { return str("[", p[0], ", ", p[1], ", ", p[2], "]"); }

std::vector<Click> parse_points(const nlohmann::json& arr, const std::string& label, const std::string& source) {
  DEX_INPUT_CHECK(arr.is_array(), source, ": \"", label, "\" must be a list of [i, j, k] points, got ", arr.dump());
  std::vector<Click> out;
  for (size_t n = 0; n < arr.size(); ++n) {
    const auto& p = arr[n];
    DEX_INPUT_CHECK(p.is_array() && p.size() == 3, source, ": ", label, " click #", n + 1, " ", p.dump(),
                    " must be a list of 3 numbers [i, j, k]");
    Click c{};
    for (int a = 0; a < 3; ++a) {
      DEX_INPUT_CHECK(p[a].is_number(), source, ": ", label, " click #", n + 1, " ", p.dump(), " has a non-numeric entry");
      c[a] = p[a].get<double>();
      DEX_INPUT_CHECK(std::isfinite(c[a]), source, ": ", label, " click #", n + 1, " ", p.dump(), " is not finite");
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

Clicks parse_clicks(const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(source, ": not valid JSON (", e.what(), ")"));
  }
  DEX_INPUT_CHECK(j.is_object(), source, ": a click file must be a JSON object like "
                  "{\"spleen\": [[i,j,k]], \"background\": []}");
  Clicks c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "image") {
      DEX_INPUT_CHECK(it->is_string(), source, ": \"image\" must be a file name string");
      c.image = it->get<std::string>();
    } else if (key == "spleen") {
      c.spleen = parse_points(*it, key, source);
    } else if (key == "background") {
      c.background = parse_points(*it, key, source);
    } else {
      throw InputError(str(source, ": unknown label \"", key, "\" (known labels: spleen, background; plus \"image\")"));
    }
  }
  return c;
}

Clicks read_clicks(const std::string& path) {
  std::ifstream f(path);
  DEX_INPUT_CHECK(f.good(), path, ": cannot open the click file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_clicks(ss.str(), path);
}

void validate_clicks(const Clicks& clicks, const std::array<int64_t, 3>& shape, const std::string& source) {
  auto check = [&](const std::vector<Click>& pts, const char* label) {
    for (size_t n = 0; n < pts.size(); ++n)
      for (int a = 0; a < 3; ++a)
        DEX_INPUT_CHECK(pts[n][a] >= 0 && pts[n][a] < static_cast<double>(shape[a]), source, ": ", label, " click #",
                        n + 1, " ", point_text(pts[n]), " is outside the image (shape ", shape[0], "x", shape[1], "x",
                        shape[2], "; index ", a, " must be in [0, ", shape[a] - 1, "])");
  };
  check(clicks.spleen, "spleen");
  check(clicks.background, "background");
}

std::vector<GridPoint> map_clicks_to_grid(const std::vector<Click>& clicks, const GridGeometry& g, bool bundle_compat,
                                          ClickStages* stages) {
  std::vector<GridPoint> out;
  if (stages) *stages = ClickStages{};
  if (clicks.empty()) return out;
  // §3.5: the same physical point as a float index into the re-oriented array.
  const Mat4 m = mat4_mul(mat4_inverse(g.oriented_affine), g.file_affine);
  // §3.6 and §3.8 factors, per axis in the order numpy pairs them.
  double f1[3], f2[3];
  for (int a = 0; a < 3; ++a) {
    if (bundle_compat) {
      // The bundle divides by the pre-orientation shape (spec §13.2): wrong axes when the orientation permutes.
      f1[a] = static_cast<double>(g.oriented_shape[a]) / static_cast<double>(g.file_shape[a]);
      f2[a] = static_cast<double>(g.spatial_size[a]) / static_cast<double>(g.file_shape[a]);
    } else {
      f1[a] = 1.0;
      f2[a] = static_cast<double>(g.spatial_size[a]) / static_cast<double>(g.oriented_shape[a]);
    }
  }
  for (const Click& p : clicks) {
    Click q{};
    for (int i = 0; i < 3; ++i) q[i] = m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2] + m[i][3];
    GridPoint a{}, b{};
    for (int i = 0; i < 3; ++i) {
      const double t = std::trunc(q[i]);                    // astype(int)
      a[i] = static_cast<int>(std::trunc(t * f1[i]));       // x factor, astype(int)
      b[i] = static_cast<int>(std::trunc(a[i] * f2[i]));    // x 128/shape, astype(int)
    }
    if (stages) {
      stages->after_reorient.push_back(q);
      stages->after_add_guidance.push_back(a);
      stages->after_resize_guidance.push_back(b);
    }
    out.push_back(b);
  }
  return out;
}

}  // namespace dex
