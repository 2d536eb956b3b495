// The index math of the GPU way back (infer/way_back_cuda.h, the DEX_HD functions the kernel runs) on the CPU:
// way_back_cpu must equal data/preprocess.cpp postprocess_logits / postprocess_probabilities bit for bit (mask and
// spleen probability) on the real CT's geometry and on the phantoms' four storage orientations (flip-only and
// axis-permuted), with the grid both smaller and larger than the oriented shape on different axes.
#include <gtest/gtest.h>

#include <cstring>

#include "data/nifti_io.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "infer/way_back_cuda.h"
#include "tests/testing.h"

namespace dex {
namespace {

// Logits on small integers in [-2, 2]: many exact ties (equal logits, and equal window averages), so the tie rule
// (background wins) is exercised as well as the arithmetic.
std::vector<float> tie_rich_logits(int64_t grid_voxels, uint64_t seed) {
  return testing::random_ints(2 * grid_voxels, seed, -2, 2);
}

// Compares way_back_cpu with the CPU way back for logits and for probabilities; *spleen: the mask's voxel count.
void expect_same_as_postprocess(const PreprocessRecord& rec, uint64_t seed, const std::string& what, int64_t* spleen) {
  const WayBackGeometry g = make_way_back_geometry(rec.geometry);
  for (int a = 0; a < 3; ++a) EXPECT_EQ(g.file[a], rec.geometry.file_shape[a]) << what;
  const int64_t n = g.file_voxels();
  std::vector<float> logits = tie_rich_logits(g.grid_voxels(), seed);
  std::vector<uint8_t> mask(static_cast<size_t>(n));
  std::vector<float> prob(static_cast<size_t>(n));
  Postprocessed ref = postprocess_logits(logits.data(), OutputLayout::NDHWC, rec);
  way_back_cpu(g, logits.data(), true, mask.data(), prob.data());
  *spleen = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(mask[i], ref.mask.data[i]) << what << ": mask differs at file voxel " << i << " (seed " << seed << ")";
    ASSERT_EQ(std::memcmp(&prob[i], &ref.prob_spleen.data[i], 4), 0)
        << what << ": probability differs at file voxel " << i << ": " << prob[i] << " vs " << ref.prob_spleen.data[i];
    *spleen += mask[i];
  }
  // From probabilities (the softmax done elsewhere): the same resize, orientation and argmax.
  std::vector<float> probs(logits.size());
  for (int64_t v = 0; v < g.grid_voxels(); ++v) way_back_softmax2(logits[2 * v], logits[2 * v + 1], &probs[2 * v], &probs[2 * v + 1]);
  Postprocessed ref_p = postprocess_probabilities(probs.data(), OutputLayout::NDHWC, rec);
  way_back_cpu(g, probs.data(), false, mask.data(), nullptr);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(mask[i], ref_p.mask.data[i]) << what << ": mask (from probabilities) differs at file voxel " << i;
}

TEST(way_back_layout, area_windows_are_torch_adaptive_pooling_windows) {
  // 128 -> 512: pure 4x replication (the spec §5 example).
  for (int64_t o = 0; o < 512; ++o) {
    int64_t s, l;
    way_back_area_window(o, 128, 512, &s, &l);
    ASSERT_EQ(s, o / 4);
    ASSERT_EQ(l, 1);
  }
  // 128 -> 100 (down): windows [floor(o*128/100), ceil((o+1)*128/100)), lengths 2 or 3, covering the whole axis.
  int64_t covered_end = 0;
  for (int64_t o = 0; o < 100; ++o) {
    int64_t s, l;
    way_back_area_window(o, 128, 100, &s, &l);
    EXPECT_EQ(s, static_cast<int64_t>(std::floor(o * 1.28))) << o;
    EXPECT_EQ(s + l, static_cast<int64_t>(std::ceil((o + 1) * 1.28 - 1e-9))) << o;
    EXPECT_TRUE(l == 2 || l == 3) << o;
    EXPECT_LE(s, covered_end);
    covered_end = s + l;
  }
  EXPECT_EQ(covered_end, 128);
}

TEST(way_back_layout, file_to_oriented_inverts_the_orientation_of_every_phantom_storage) {
  // reorient (file -> oriented) maps oriented n to file m; the way back maps file m back to the same n.
  const std::array<int64_t, 3> file{5, 7, 3};
  for (auto po : {PhantomOrientation::RAS, PhantomOrientation::LPS, PhantomOrientation::PermutedALS,
                  PhantomOrientation::PermutedSPL}) {
    // The storage map goes canonical -> stored; preprocessing applies its inverse (stored -> RAS).
    const Orientation to_ras = phantom_storage(po).inverse();
    GridGeometry gg;
    gg.file_shape = file;
    gg.orientation = to_ras;
    gg.oriented_shape = to_ras.out_shape(file);
    gg.spatial_size = {4, 4, 4};
    const WayBackGeometry g = make_way_back_geometry(gg);
    const Mat4 o2f = to_ras.out_to_in(file);
    for (int64_t n0 = 0; n0 < gg.oriented_shape[0]; ++n0)
      for (int64_t n1 = 0; n1 < gg.oriented_shape[1]; ++n1)
        for (int64_t n2 = 0; n2 < gg.oriented_shape[2]; ++n2) {
          int64_t f[3];
          for (int r = 0; r < 3; ++r)
            f[r] = static_cast<int64_t>(std::lround(o2f[r][0] * n0 + o2f[r][1] * n1 + o2f[r][2] * n2 + o2f[r][3]));
          int64_t o[3];
          way_back_file_to_oriented(g, f[0], f[1], f[2], o);
          ASSERT_EQ(o[0], n0) << phantom_orientation_name(po);
          ASSERT_EQ(o[1], n1) << phantom_orientation_name(po);
          ASSERT_EQ(o[2], n2) << phantom_orientation_name(po);
        }
  }
}

TEST(way_back_layout, equals_postprocess_logits_bitwise_on_the_real_ct_geometry) {
  NiftiMeta meta = read_nifti_header(testing::shared_dir("data/real-ct/imagesTr/case_a.nii.gz"));
  Volume v;  // the geometry only: preprocess_image needs voxels, so give it a constant volume of that shape
  v.shape = meta.shape;
  v.affine = meta.affine;
  v.data.assign(static_cast<size_t>(v.size()), 0.f);
  PreprocessOptions opt;  // 128^3: 122 x 101 x 112 -> windows of 1 and 2 voxels on every axis
  PreprocessRecord rec = preprocess_image(v, opt).record;
  int64_t spleen = 0;
  expect_same_as_postprocess(rec, 11, "real CT", &spleen);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GT(spleen, 0);
  EXPECT_LT(spleen, v.size());
}

TEST(way_back_layout, equals_postprocess_logits_bitwise_on_the_four_phantom_orientations) {
  PhantomOptions po;
  const std::array<PhantomOrientation, 4> orients{PhantomOrientation::RAS, PhantomOrientation::LPS,
                                                  PhantomOrientation::PermutedALS, PhantomOrientation::PermutedSPL};
  bool saw_permuted = false, saw_flip = false;
  for (size_t k = 0; k < orients.size(); ++k) {
    po.orientation = orients[k];
    Phantom ph = make_phantom(5, static_cast<int64_t>(k), po);
    PreprocessOptions opt;
    opt.spatial_size = {48, 96, 40};  // smaller and larger than the phantom's 64-96 voxels per axis
    PreprocessRecord rec = preprocess_image(ph.ct, opt).record;
    saw_permuted = saw_permuted || rec.geometry.orientation.permutes();
    for (int a = 0; a < 3; ++a) saw_flip = saw_flip || rec.geometry.orientation.flip[a];
    int64_t spleen = 0;
    expect_same_as_postprocess(rec, 20 + k, std::string("phantom ") + phantom_orientation_name(orients[k]), &spleen);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_GT(spleen, 0);
  }
  EXPECT_TRUE(saw_permuted && saw_flip) << "the four orientations must include flips and axis permutations";
}

}  // namespace
}  // namespace dex
