#include "data/phantom.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "data/nifti_io.h"
#include "kernels/common.h"
#include "kernels/rng.h"

namespace dex {

namespace {

constexpr double kPi = 3.14159265358979323846;
using Vec3 = std::array<double, 3>;
using Mat3 = std::array<Vec3, 3>;  // rows

Mat3 rotation_zyx(double yaw, double pitch, double roll) {
  const double cz = std::cos(yaw), sz = std::sin(yaw), cy = std::cos(pitch), sy = std::sin(pitch);
  const double cx = std::cos(roll), sx = std::sin(roll);
  // R = Rz(yaw) * Ry(pitch) * Rx(roll)
  return Mat3{Vec3{cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx},
              Vec3{sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx}, Vec3{-sy, cy * sx, cy * cx}};
}

// One solid organ: a rotated ellipsoid, optionally bent into a crescent and with a wavy surface.
struct Blob {
  Vec3 center{0, 0, 0};
  Vec3 semi{1, 1, 1};       // semi-axes (mm) along the local axes
  Mat3 rot{Vec3{1, 0, 0}, Vec3{0, 1, 0}, Vec3{0, 0, 1}};  // local axis a = column a
  double bend = 0;          // crescent: local axis 2 shifted by bend * semi[2] * (q0/semi[0])^2
  std::array<double, 3> wave_amp{0, 0, 0};  // surface waves: radius *= 1 + sum amp_m sin(freq_m . u + phase_m)
  std::array<Vec3, 3> wave_freq{};
  std::array<double, 3> wave_phase{0, 0, 0};

  double max_radius() const {
    double r = std::max({semi[0], semi[1], semi[2]});
    return r * (1 + std::fabs(bend) + wave_amp[0] + wave_amp[1] + wave_amp[2]) + 2;
  }
  bool contains(const Vec3& p) const {
    const Vec3 d{p[0] - center[0], p[1] - center[1], p[2] - center[2]};
    Vec3 q;  // local coordinates: q_a = column a of rot . d
    for (int a = 0; a < 3; ++a) q[a] = rot[0][a] * d[0] + rot[1][a] * d[1] + rot[2][a] * d[2];
    const double t = q[0] / semi[0];
    q[2] -= bend * semi[2] * t * t;
    const Vec3 n{q[0] / semi[0], q[1] / semi[1], q[2] / semi[2]};
    const double r2 = n[0] * n[0] + n[1] * n[1] + n[2] * n[2];
    double scale = 1;
    if (wave_amp[0] + wave_amp[1] + wave_amp[2] > 0 && r2 > 1e-12) {
      const double r = std::sqrt(r2);
      for (int m = 0; m < 3; ++m)
        scale += wave_amp[m] * std::sin(wave_freq[m][0] * n[0] / r + wave_freq[m][1] * n[1] / r +
                                        wave_freq[m][2] * n[2] / r + wave_phase[m]);
    }
    return r2 <= scale * scale;
  }
};

double uniform(Rng& rng, double lo, double hi) { return lo + (hi - lo) * rng.uniform(); }

struct Grid {
  std::array<int64_t, 3> n{0, 0, 0};
  Vec3 spacing{1, 1, 1}, origin{0, 0, 0};
  Vec3 world(int64_t i, int64_t j, int64_t k) const {
    return {origin[0] + i * spacing[0], origin[1] + j * spacing[1], origin[2] + k * spacing[2]};
  }
  // Visits the voxels of the world box [c - r, c + r] (clipped to the grid).
  void for_box(const Vec3& c, double r, const std::function<void(int64_t, int64_t, int64_t, const Vec3&)>& f) const {
    int64_t lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::max<int64_t>(0, static_cast<int64_t>(std::floor((c[a] - r - origin[a]) / spacing[a])));
      hi[a] = std::min<int64_t>(n[a] - 1, static_cast<int64_t>(std::ceil((c[a] + r - origin[a]) / spacing[a])));
    }
    for (int64_t i = lo[0]; i <= hi[0]; ++i)
      for (int64_t j = lo[1]; j <= hi[1]; ++j)
        for (int64_t k = lo[2]; k <= hi[2]; ++k) f(i, j, k, world(i, j, k));
  }
};

bool make_dir(const std::string& d) {
  struct stat st;
  if (stat(d.c_str(), &st) == 0) return S_ISDIR(st.st_mode);
  return mkdir(d.c_str(), 0755) == 0;
}

}  // namespace

const char* phantom_orientation_name(PhantomOrientation o) {
  switch (o) {
    case PhantomOrientation::Mixed: return "mixed";
    case PhantomOrientation::LPS: return "lps";
    case PhantomOrientation::RAS: return "ras";
    case PhantomOrientation::PermutedALS: return "als";
    case PhantomOrientation::PermutedSPL: return "spl";
  }
  return "?";
}

PhantomOrientation parse_phantom_orientation(const std::string& s) {
  for (auto o : {PhantomOrientation::Mixed, PhantomOrientation::LPS, PhantomOrientation::RAS,
                 PhantomOrientation::PermutedALS, PhantomOrientation::PermutedSPL})
    if (s == phantom_orientation_name(o)) return o;
  throw InputError("unknown phantom orientation '" + s + "' (expected mixed, lps, ras, als or spl)");
}

const char* phantom_view_name(PhantomView v) { return v == PhantomView::Spleen ? "spleen" : "abdomen"; }

PhantomView parse_phantom_view(const std::string& s) {
  if (s == "abdomen") return PhantomView::Abdomen;
  if (s == "spleen") return PhantomView::Spleen;
  throw InputError("unknown phantom view '" + s + "' (expected abdomen or spleen)");
}

Orientation phantom_storage(PhantomOrientation o) {
  Orientation s;
  switch (o) {
    case PhantomOrientation::LPS:  // axes x, y flipped: affine diag(-sx, -sy, sz), like most MSD volumes
      s.flip[0] = s.flip[1] = true;
      break;
    case PhantomOrientation::PermutedALS:  // stored axis 0 = anterior, 1 = left, 2 = superior
      s.perm[0] = 1; s.perm[1] = 0; s.flip[1] = true;
      break;
    case PhantomOrientation::PermutedSPL:  // sagittal storage: 0 = superior, 1 = posterior, 2 = left
      s.perm[0] = 2; s.perm[2] = 0; s.flip[1] = s.flip[2] = true;
      break;
    default: break;  // RAS (and Mixed, resolved by the caller)
  }
  return s;
}

Phantom make_phantom(uint64_t seed, int64_t index, const PhantomOptions& opt) {
  DEX_CHECK(index >= 0, "make_phantom: negative case index ", index);
  Rng rng(seed, rng_stream(RngStream::Phantom, static_cast<uint64_t>(index) << 1));
  const uint64_t noise_stream = rng_stream(RngStream::Phantom, (static_cast<uint64_t>(index) << 1) | 1);

  // ---- grid (canonical RAS: axis 0 -> right, 1 -> anterior, 2 -> superior) ------------------------------------
  Grid g;
  double extent_z;
  if (opt.size == PhantomSize::Small) {
    g.n[0] = 64 + static_cast<int64_t>(rng.below(33));
    g.n[1] = 64 + static_cast<int64_t>(rng.below(33));
    g.n[2] = 64 + static_cast<int64_t>(rng.below(33));
    const double fov = uniform(rng, 370, 440);
    g.spacing = {fov / g.n[0], fov / g.n[1], 0};
    extent_z = uniform(rng, 200, 280);
  } else {
    g.n = {512, 512, 80 + static_cast<int64_t>(rng.below(81))};
    const double fov = uniform(rng, 340, 460);
    g.spacing = {fov / 512, fov / 512, 0};
    extent_z = uniform(rng, 200, 300);
  }
  g.spacing[2] = extent_z / g.n[2];
  const double half_x = 0.5 * (g.n[0] - 1) * g.spacing[0], half_y = 0.5 * (g.n[1] - 1) * g.spacing[1];
  g.origin = {-half_x + uniform(rng, -8, 8), -half_y + uniform(rng, -8, 8), uniform(rng, -50, 50)};
  const double z0 = g.origin[2], z1 = z0 + (g.n[2] - 1) * g.spacing[2];

  // ---- anatomy parameters (world mm) -----------------------------------------------------------------------
  const double half_fov = std::min(half_x, half_y);
  const double a = std::min(uniform(rng, 135, 170), half_x - 15), b = std::min(uniform(rng, 92, 122), half_y - 15);
  const double bx = uniform(rng, -6, 6), by = uniform(rng, -6, 6);
  const double fat = uniform(rng, 8, 25), muscle = uniform(rng, 6, 12);
  const double ac = a - fat - muscle, bc = b - fat - muscle;  // cavity semi-axes
  const double hu_fat = uniform(rng, -110, -90), hu_muscle = uniform(rng, 45, 58), hu_cavity = uniform(rng, -105, -80);  // visceral fat
  const double noise_sigma = uniform(rng, 10, 20);
  (void)half_fov;
  auto zf = [&](double f) { return z0 + f * (z1 - z0); };

  // spine
  const double rv = uniform(rng, 15, 20);
  const double yv = by - bc + 22 + rv;                 // vertebral body centre (posterior cavity)
  const double period = uniform(rng, 28, 34), disc = 6, zphase = uniform(rng, 0, period);
  const double hu_cortex = uniform(rng, 850, 1000), hu_cancellous = uniform(rng, 350, 450);

  Blob liver;
  liver.center = {bx + ac * uniform(rng, 0.38, 0.5), by + uniform(rng, -10, 20), zf(uniform(rng, 0.6, 0.75))};
  liver.semi = {uniform(rng, 65, 85), uniform(rng, 70, 92), uniform(rng, 70, 95)};
  liver.rot = rotation_zyx(uniform(rng, -0.3, 0.3), uniform(rng, -0.2, 0.2), 0);
  const double hu_liver = uniform(rng, 55, 65);

  Blob kidney[2];
  for (int s = 0; s < 2; ++s) {  // s = 0: right kidney (x > 0), 1: left
    const double side = s == 0 ? 1 : -1;
    kidney[s].center = {bx + side * uniform(rng, 55, 70), yv + uniform(rng, -5, 10),
                        zf(uniform(rng, 0.28, 0.42) + 0.06 * s)};
    kidney[s].semi = {uniform(rng, 24, 32), uniform(rng, 20, 28), uniform(rng, 45, 60)};
    kidney[s].rot = rotation_zyx(side * uniform(rng, 0.2, 0.5), 0, 0);
  }
  const double hu_kidney = uniform(rng, 27, 35);

  Blob spleen;
  spleen.center = {bx - ac * uniform(rng, 0.5, 0.66), by - bc * uniform(rng, 0.15, 0.42), zf(uniform(rng, 0.5, 0.7))};
  spleen.semi = {uniform(rng, 40, 65), uniform(rng, 24, 40), uniform(rng, 14, 26)};
  // Long axis mostly cranio-caudal and tilted; short axis roughly lateral so the crescent hugs the body wall.
  spleen.rot = rotation_zyx(uniform(rng, -0.6, 0.6), uniform(rng, -1.9, -1.2), uniform(rng, -0.5, 0.5));
  spleen.bend = uniform(rng, 0.0, 0.9);
  for (int m = 0; m < 3; ++m) {
    spleen.wave_amp[m] = uniform(rng, 0.0, 0.1);
    spleen.wave_freq[m] = {uniform(rng, -4, 4), uniform(rng, -4, 4), uniform(rng, -4, 4)};
    spleen.wave_phase[m] = uniform(rng, 0, 2 * kPi);
  }
  const double hu_spleen = uniform(rng, 40, 50);

  // Stomach (soft tissue, medial and anterior to the spleen, which it often touches) and bowel loops in the fat.
  Blob stomach;
  stomach.center = {spleen.center[0] + uniform(rng, 45, 70), spleen.center[1] + uniform(rng, 20, 45),
                    spleen.center[2] + uniform(rng, -10, 25)};
  stomach.semi = {uniform(rng, 30, 45), uniform(rng, 22, 32), uniform(rng, 30, 45)};
  stomach.rot = rotation_zyx(uniform(rng, -0.5, 0.5), 0, 0);
  const double hu_stomach = uniform(rng, 25, 40);
  const int nbowel = 22 + static_cast<int>(rng.below(11));
  std::vector<Blob> bowel(nbowel);
  std::vector<double> hu_bowel(nbowel);
  for (int m = 0; m < nbowel; ++m) {
    bowel[m].center = {bx + ac * uniform(rng, -0.7, 0.7), by + bc * uniform(rng, -0.2, 0.8), zf(uniform(rng, 0.0, 0.9))};
    bowel[m].semi = {uniform(rng, 14, 28), uniform(rng, 12, 24), uniform(rng, 20, 40)};
    bowel[m].rot = rotation_zyx(uniform(rng, 0, kPi), uniform(rng, -0.5, 0.5), 0);
    hu_bowel[m] = uniform(rng, 20, 40);
  }
  const int ngas = 6 + static_cast<int>(rng.below(9));
  std::vector<Blob> gas(ngas);
  for (auto& gb : gas) {
    gb.center = {bx + ac * uniform(rng, -0.6, 0.6), by + bc * uniform(rng, -0.05, 0.7), zf(uniform(rng, 0.0, 0.8))};
    gb.semi = {uniform(rng, 6, 20), uniform(rng, 6, 16), uniform(rng, 6, 20)};
    gb.rot = rotation_zyx(uniform(rng, 0, kPi), 0, 0);
  }

  // ---- spleen view: a box around the spleen replaces the abdominal grid (drawn last: Abdomen is unchanged) -------
  if (opt.view == PhantomView::Spleen) {
    // World half-extent of the spleen per axis: the rotated ellipsoid's, grown by its waves, plus the crescent shift.
    const double grow = 1 + spleen.wave_amp[0] + spleen.wave_amp[1] + spleen.wave_amp[2];
    for (int w = 0; w < 3; ++w) {
      double e2 = 0;
      for (int a2 = 0; a2 < 3; ++a2) e2 += (spleen.rot[w][a2] * spleen.semi[a2]) * (spleen.rot[w][a2] * spleen.semi[a2]);
      const double half_ext = std::sqrt(e2) * grow + std::fabs(spleen.rot[w][2]) * spleen.bend * spleen.semi[2];
      const double half = std::max(uniform(rng, 60, 75), half_ext + 10);
      const double slack = std::max(0.0, std::min(12.0, half - half_ext - 8));
      const double c = spleen.center[w] + uniform(rng, -slack, slack);
      g.n[w] = opt.size == PhantomSize::Small ? 48 + static_cast<int64_t>(rng.below(17))
                                               : 192 + static_cast<int64_t>(rng.below(65));
      g.spacing[w] = 2 * half / static_cast<double>(g.n[w] - 1);
      g.origin[w] = c - half;
    }
  }

  // ---- paint on the canonical grid --------------------------------------------------------------------------
  Volume ct;
  ct.shape = g.n;
  ct.data.assign(static_cast<size_t>(ct.size()), -1000.f);
  ct.affine = mat4_identity();
  for (int a2 = 0; a2 < 3; ++a2) {
    ct.affine[a2][a2] = g.spacing[a2];
    ct.affine[a2][3] = g.origin[a2];
  }
  LabelVolume label;
  label.shape = g.n;
  label.affine = ct.affine;
  label.data.assign(static_cast<size_t>(label.size()), 0);
  const int64_t nz = g.n[2];
  std::vector<uint8_t> cavity(static_cast<size_t>(g.n[0] * g.n[1]), 0);
  auto ell = [](double dx, double dy, double sa, double sb) { return (dx / sa) * (dx / sa) + (dy / sb) * (dy / sb); };
  for (int64_t i = 0; i < g.n[0]; ++i)
    for (int64_t j = 0; j < g.n[1]; ++j) {
      const Vec3 p = g.world(i, j, 0);
      const double dx = p[0] - bx, dy = p[1] - by;
      float hu = -1000.f;
      if (ell(dx, dy, a, b) <= 1) {
        if (ell(dx, dy, a - fat, b - fat) > 1) hu = static_cast<float>(hu_fat);
        else if (ell(dx, dy, ac, bc) > 1) hu = static_cast<float>(hu_muscle);
        else {
          hu = static_cast<float>(hu_cavity);
          cavity[i * g.n[1] + j] = 1;
        }
      }
      float* col = &ct.data[(i * g.n[1] + j) * nz];
      std::fill(col, col + nz, hu);
    }
  auto in_cavity = [&](int64_t i, int64_t j) { return cavity[i * g.n[1] + j] != 0; };
  auto paint = [&](const Blob& blob, double hu, bool is_spleen) {
    g.for_box(blob.center, blob.max_radius(), [&](int64_t i, int64_t j, int64_t k, const Vec3& p) {
      if (!in_cavity(i, j) || !blob.contains(p)) return;
      ct.at(i, j, k) = static_cast<float>(hu);
      label.at(i, j, k) = is_spleen ? 1 : 0;
    });
  };
  for (int m = 0; m < nbowel; ++m) paint(bowel[m], hu_bowel[m], false);
  paint(stomach, hu_stomach, false);
  for (const auto& gb : gas) paint(gb, -1000, false);
  // aorta (left-anterior of the spine) and paraspinal muscles, constant along z
  for (int64_t i = 0; i < g.n[0]; ++i)
    for (int64_t j = 0; j < g.n[1]; ++j) {
      const Vec3 p = g.world(i, j, 0);
      float hu;
      if (ell(p[0] - (bx - 15), p[1] - (yv + rv + 14), 11, 11) <= 1) hu = 40.f;
      else if (ell(std::fabs(p[0] - bx) - 38, p[1] - (yv - rv - 18), 26, 20) <= 1) hu = static_cast<float>(hu_muscle);
      else continue;
      if (!in_cavity(i, j) && ell(p[0] - bx, p[1] - by, a - fat, b - fat) > 1) continue;
      float* col = &ct.data[(i * g.n[1] + j) * nz];
      std::fill(col, col + nz, hu);
    }
  for (const auto& kd : kidney) paint(kd, hu_kidney, false);
  paint(liver, hu_liver, false);
  // spine: vertebral bodies (cortex + cancellous) with discs, spinal canal, spinous process
  for (int64_t i = 0; i < g.n[0]; ++i)
    for (int64_t j = 0; j < g.n[1]; ++j) {
      const Vec3 p = g.world(i, j, 0);
      const double dx = p[0] - bx, dyv = p[1] - yv;
      const double rb = std::sqrt(dx * dx + dyv * dyv);
      const bool canal = ell(dx, p[1] - (yv - rv - 9), 8, 7) <= 1;
      const bool arch = !canal && ell(dx, p[1] - (yv - rv - 9), 16, 13) <= 1;
      const bool process = ell(dx, p[1] - (yv - rv - 30), 5, 16) <= 1;
      if (rb > rv && !canal && !arch && !process) continue;
      for (int64_t k = 0; k < nz; ++k) {
        const double z = g.world(i, j, k)[2];
        const bool in_disc = std::fmod(z - z0 + zphase, period) < disc;
        float hu;
        if (canal) hu = 10.f;
        else if (rb <= rv) hu = in_disc ? 85.f : static_cast<float>(rb > rv - 2.5 ? hu_cortex : hu_cancellous);
        else hu = in_disc ? static_cast<float>(hu_muscle) : static_cast<float>(hu_cortex * 0.8);
        ct.at(i, j, k) = hu;
        label.at(i, j, k) = 0;
      }
    }
  paint(spleen, hu_spleen, true);
  // noise, then integer HU as stored in int16
  for (int64_t v = 0; v < ct.size(); ++v) {
    const double x = ct.data[v] + noise_sigma * rng_normal(seed, noise_stream, static_cast<uint64_t>(v));
    ct.data[v] = static_cast<float>(std::clamp(std::nearbyint(x), -1024.0, 3071.0));
  }

  // ---- storage orientation ----------------------------------------------------------------------------------
  Phantom ph;
  ph.orientation = opt.orientation == PhantomOrientation::Mixed ? static_cast<PhantomOrientation>(index % 4)
                                                                : opt.orientation;
  const Orientation store = phantom_storage(ph.orientation);
  ph.ct = store.is_identity() ? std::move(ct) : reorient(ct, store);
  ph.label = store.is_identity() ? std::move(label) : reorient(label, store);
  ph.spleen_center = spleen.center;
  ph.body_center = {bx, by, 0.5 * (z0 + z1)};
  ph.body_semi_axes = {a, b};
  return ph;
}

PhantomDatasetStats write_phantom_dataset(const std::string& dir, int64_t count, uint64_t seed,
                                          const PhantomOptions& opt, int64_t test_count, bool verbose) {
  DEX_INPUT_CHECK(count >= 0 && test_count >= 0, "phantom dataset: counts must be >= 0 (got ", count, " training, ",
                  test_count, " test)");
  DEX_INPUT_CHECK(!dir.empty(), "phantom dataset: empty output folder name");
  DEX_INPUT_CHECK(make_dir(dir), "phantom dataset: cannot create folder ", dir,
                  " (does its parent exist, and is it writable?)");
  for (const char* sub : {"imagesTr", "labelsTr", "imagesTs"})
    DEX_INPUT_CHECK(make_dir(dir + "/" + sub), "phantom dataset: cannot create folder ", dir, "/", sub);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  PhantomDatasetStats st;
  nlohmann::json training = nlohmann::json::array(), test = nlohmann::json::array();
  for (int64_t c = 0; c < count + test_count; ++c) {
    const auto tg = clock::now();
    Phantom p = make_phantom(seed, c, opt);
    st.generate_seconds += std::chrono::duration<double>(clock::now() - tg).count();
    st.voxels += p.ct.size();
    const std::string name = "spleen_" + std::to_string(c + 1) + ".nii.gz";
    if (c < count) {
      write_nifti(dir + "/imagesTr/" + name, p.ct, NiftiDType::I16);
      write_nifti(dir + "/labelsTr/" + name, p.label);
      training.push_back({{"image", "./imagesTr/" + name}, {"label", "./labelsTr/" + name}});
    } else {
      write_nifti(dir + "/imagesTs/" + name, p.ct, NiftiDType::I16);
      test.push_back("./imagesTs/" + name);
    }
    if (verbose)
      std::printf("[%lld/%lld] %s %lldx%lldx%lld (%s)\n", static_cast<long long>(c + 1),
                  static_cast<long long>(count + test_count), name.c_str(), static_cast<long long>(p.ct.shape[0]),
                  static_cast<long long>(p.ct.shape[1]), static_cast<long long>(p.ct.shape[2]),
                  phantom_orientation_name(p.orientation));
  }
  nlohmann::json js = {{"name", "Spleen"},
                       {"description", std::string("dex synthetic abdominal CT phantoms (seed ") + std::to_string(seed) +
                                          ", view " + phantom_view_name(opt.view) + ")"},
                       {"tensorImageSize", "3D"},
                       {"modality", {{"0", "CT"}}},
                       {"labels", {{"0", "background"}, {"1", "spleen"}}},
                       {"numTraining", count},
                       {"numTest", test_count},
                       {"training", training},
                       {"test", test}};
  const std::string path = dir + "/dataset.json", tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    DEX_INPUT_CHECK(f.good(), "phantom dataset: cannot write ", tmp);
    f << js.dump(2) << "\n";
    DEX_INPUT_CHECK(f.good(), "phantom dataset: write failed for ", tmp);
  }
  DEX_INPUT_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "phantom dataset: cannot rename ", tmp, " to ", path);
  st.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return st;
}

}  // namespace dex
