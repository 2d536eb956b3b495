// Phantom generator: anatomy where it belongs (spleen on the patient's left and posterior, in world coordinates
// through the affine), plausible HU, determinism per seed, and storage orientations that all read back to the same
// RAS volume and the same world position of the spleen.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "data/nifti_io.h"
#include "data/orientation.h"
#include "data/phantom.h"
#include "tests/testing.h"

namespace dex {
namespace {

struct LabelStats {
  int64_t count = 0;
  std::array<double, 3> centroid{0, 0, 0};  // world
  double mean_hu = 0, min_hu = 1e9;
  bool touches_border = false;
  int64_t outside_body = 0;  // label voxels whose world (x, y) lies outside the body ellipse
};

LabelStats label_stats(const Volume& ct, const LabelVolume& label, const Phantom* body = nullptr) {
  LabelStats s;
  for (int64_t i = 0; i < label.shape[0]; ++i)
    for (int64_t j = 0; j < label.shape[1]; ++j)
      for (int64_t k = 0; k < label.shape[2]; ++k) {
        if (!label.at(i, j, k)) continue;
        const auto w = mat4_apply(label.affine, {double(i), double(j), double(k)});
        for (int a = 0; a < 3; ++a) s.centroid[a] += w[a];
        s.mean_hu += ct.at(i, j, k);
        s.min_hu = std::min<double>(s.min_hu, ct.at(i, j, k));
        ++s.count;
        if (i == 0 || j == 0 || i == label.shape[0] - 1 || j == label.shape[1] - 1) s.touches_border = true;
        if (body) {
          const double dx = (w[0] - body->body_center[0]) / body->body_semi_axes[0];
          const double dy = (w[1] - body->body_center[1]) / body->body_semi_axes[1];
          s.outside_body += dx * dx + dy * dy > 1;
        }
      }
  if (s.count) {
    for (double& c : s.centroid) c /= s.count;
    s.mean_hu /= s.count;
  }
  return s;
}

std::string temp_dir(const std::string& tag) {
  std::string d = "/tmp/dex_test_phantom_" + tag + "_" + std::to_string(getpid());
  mkdir(d.c_str(), 0755);
  return d;
}

}  // namespace

TEST(Phantom, AnatomyAndHuRanges) {
  PhantomOptions opt;
  opt.orientation = PhantomOrientation::RAS;  // array axes = world axes here; the other storages are tested below
  for (int64_t index = 0; index < 4; ++index) {
    const Phantom p = make_phantom(11, index, opt);
    ASSERT_EQ(p.ct.shape, p.label.shape);
    for (int a = 0; a < 3; ++a) {
      EXPECT_GE(p.ct.shape[a], 64);
      EXPECT_LE(p.ct.shape[a], 96);
    }
    const LabelStats s = label_stats(p.ct, p.label, &p);
    EXPECT_GT(s.count, 200) << "case " << index << ": spleen present";
    EXPECT_EQ(s.outside_body, 0) << "case " << index << ": spleen voxels outside the body ellipse";
    // Inside the body: no spleen voxel is air, and the spleen never touches the in-plane border of the field of view.
    EXPECT_GT(s.min_hu, -300) << "case " << index;
    EXPECT_FALSE(s.touches_border) << "case " << index;
    EXPECT_NEAR(s.mean_hu, 45, 8) << "case " << index;
    // Patient's left (RAS: smaller x) and posterior (smaller y) of the body axis, in world coordinates.
    EXPECT_LT(s.centroid[0], p.body_center[0] - 40) << "case " << index;
    EXPECT_LT(s.centroid[1], p.body_center[1]) << "case " << index;
    // HU: air, fat, soft tissue and bone all present, within int16 CT range.
    std::vector<float> v = p.ct.data;
    std::sort(v.begin(), v.end());
    const auto pct = [&](double q) { return v[static_cast<size_t>(q * (v.size() - 1))]; };
    EXPECT_GE(v.front(), -1024.f);
    EXPECT_LE(v.back(), 3071.f);
    EXPECT_LT(pct(0.05), -900.f) << "air outside the body";
    EXPECT_GT(pct(0.9995), 600.f) << "bone";
    int64_t fat = 0, soft = 0;
    for (float x : p.ct.data) {
      fat += x > -160 && x < -40;
      soft += x > 20 && x < 90;
    }
    EXPECT_GT(fat, p.ct.size() / 50) << "fat";
    EXPECT_GT(soft, p.ct.size() / 10) << "soft tissue";
    for (float x : p.ct.data) ASSERT_EQ(x, std::nearbyint(x)) << "integer HU";
  }
}

TEST(Phantom, DeterministicPerSeed) {
  const Phantom a = make_phantom(5, 2), b = make_phantom(5, 2), c = make_phantom(6, 2);
  EXPECT_EQ(a.ct.data, b.ct.data);
  EXPECT_EQ(a.label.data, b.label.data);
  EXPECT_EQ(a.ct.affine, b.ct.affine);
  EXPECT_TRUE(a.ct.shape != c.ct.shape || a.ct.data != c.ct.data);
  // Varied shapes: cases differ in size and spleen volume.
  const Phantom d = make_phantom(5, 3);
  EXPECT_NE(label_stats(a.ct, a.label).count, label_stats(d.ct, d.label).count);
}

// Every storage orientation, written to NIfTI and read back, reorients (nibabel rule) to the RAS-stored volume
// bit for bit, with the same affine, and the spleen sits at the same world position.
TEST(Phantom, OrientationVariantsReadBackConsistently) {
  const std::string dir = temp_dir("orient");
  PhantomOptions ras_opt;
  ras_opt.orientation = PhantomOrientation::RAS;
  const Phantom ref = make_phantom(21, 1, ras_opt);
  const LabelStats ref_stats = label_stats(ref.ct, ref.label);
  for (auto o : {PhantomOrientation::LPS, PhantomOrientation::RAS, PhantomOrientation::PermutedALS,
                 PhantomOrientation::PermutedSPL}) {
    PhantomOptions opt;
    opt.orientation = o;
    const Phantom p = make_phantom(21, 1, opt);
    const std::string name = phantom_orientation_name(o);
    const std::string img = dir + "/" + name + "_ct.nii.gz", lab = dir + "/" + name + "_label.nii.gz";
    write_nifti(img, p.ct, NiftiDType::I16);
    write_nifti(lab, p.label);
    NiftiMeta meta;
    const Volume ct = read_nifti(img, &meta);
    const LabelVolume label = read_nifti_labels(lab);
    EXPECT_EQ(meta.datatype, 4) << "int16";
    EXPECT_EQ(ct.data, p.ct.data) << name;
    EXPECT_EQ(label.data, p.label.data) << name;
    const Orientation to_ras = ras_orientation(ct.affine);
    EXPECT_EQ(to_ras.permutes(), o == PhantomOrientation::PermutedALS || o == PhantomOrientation::PermutedSPL);
    const Volume ct_ras = reorient(ct, to_ras);
    const LabelVolume label_ras = reorient(label, to_ras);
    EXPECT_EQ(ct_ras.shape, ref.ct.shape) << name;
    EXPECT_EQ(ct_ras.data, ref.ct.data) << name;
    EXPECT_EQ(label_ras.data, ref.label.data) << name;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) EXPECT_NEAR(ct_ras.affine[r][c], ref.ct.affine[r][c], 1e-4) << name;
    const LabelStats s = label_stats(ct, label);  // in the stored grid, through the stored affine
    for (int a = 0; a < 3; ++a) EXPECT_NEAR(s.centroid[a], ref_stats.centroid[a], 1e-3) << name << " axis " << a;
    EXPECT_LT(s.centroid[0], p.body_center[0]) << name << ": patient's left";
    std::remove(img.c_str());
    std::remove(lab.c_str());
  }
  rmdir(dir.c_str());
}

// The spleen view is the same anatomy on a box around the spleen: the spleen has the same world position and volume
// as in the abdominal view, never touches any face of the box, and fills ~5% of it instead of ~0.3%.
TEST(Phantom, SpleenViewIsABoxAroundTheSameSpleen) {
  PhantomOptions abdomen, spleen;
  abdomen.orientation = spleen.orientation = PhantomOrientation::RAS;
  spleen.view = PhantomView::Spleen;
  for (int64_t index = 0; index < 6; ++index) {
    const Phantom a = make_phantom(11, index, abdomen), p = make_phantom(11, index, spleen);
    EXPECT_EQ(a.spleen_center, p.spleen_center) << "case " << index;
    ASSERT_EQ(p.ct.shape, p.label.shape);
    for (int ax = 0; ax < 3; ++ax) {
      EXPECT_GE(p.ct.shape[ax], 48);
      EXPECT_LE(p.ct.shape[ax], 64);
    }
    const LabelStats sa = label_stats(a.ct, a.label, &a), sp = label_stats(p.ct, p.label, &p);
    const double fraction_a = double(sa.count) / double(a.label.size());
    const double fraction_p = double(sp.count) / double(p.label.size());
    EXPECT_LT(fraction_a, 0.01) << "case " << index;
    EXPECT_GT(fraction_p, 0.025) << "case " << index;
    EXPECT_LT(fraction_p, 0.12) << "case " << index;
    const auto voxel_mm3 = [](const Volume& v) {
      return std::fabs(v.affine[0][0] * v.affine[1][1] * v.affine[2][2]);  // RAS storage: diagonal affine
    };
    EXPECT_NEAR(sp.count * voxel_mm3(p.ct) / (sa.count * voxel_mm3(a.ct)), 1.0, 0.1) << "case " << index;
    for (int ax = 0; ax < 3; ++ax)
      EXPECT_NEAR(sp.centroid[ax], sa.centroid[ax], 3.0) << "case " << index << " axis " << ax;
    EXPECT_EQ(sp.outside_body, 0) << "case " << index;
    EXPECT_NEAR(sp.mean_hu, 45, 8) << "case " << index;
    int64_t on_faces = 0;
    for (int64_t i = 0; i < p.label.shape[0]; ++i)
      for (int64_t j = 0; j < p.label.shape[1]; ++j)
        for (int64_t k = 0; k < p.label.shape[2]; ++k) {
          const bool face = i == 0 || j == 0 || k == 0 || i == p.label.shape[0] - 1 || j == p.label.shape[1] - 1 ||
                            k == p.label.shape[2] - 1;
          on_faces += face && p.label.at(i, j, k);
        }
    EXPECT_EQ(on_faces, 0) << "case " << index << ": the box cuts the spleen";
    // Its neighbours are in the box too: fat, soft tissue other than the spleen, and air or gas.
    int64_t fat = 0, soft_not_spleen = 0;
    for (int64_t v = 0; v < p.ct.size(); ++v) {
      fat += p.ct.data[v] > -160 && p.ct.data[v] < -40;
      soft_not_spleen += p.ct.data[v] > 20 && p.ct.data[v] < 90 && !p.label.data[v];
    }
    EXPECT_GT(fat, p.ct.size() / 20) << "case " << index;
    EXPECT_GT(soft_not_spleen, p.ct.size() / 20) << "case " << index;
  }
  EXPECT_EQ(parse_phantom_view("spleen"), PhantomView::Spleen);
  EXPECT_EQ(parse_phantom_view("abdomen"), PhantomView::Abdomen);
  EXPECT_THROW(parse_phantom_view("liver"), InputError);
}

TEST(Phantom, BadOptionsAreInputErrors) {
  EXPECT_THROW(parse_phantom_orientation("sideways"), InputError);
  EXPECT_EQ(parse_phantom_orientation("als"), PhantomOrientation::PermutedALS);
  EXPECT_THROW(write_phantom_dataset("/nonexistent-dex-parent/x", 1, 0), InputError);
}

}  // namespace dex
