// The index math and arithmetic of the GPU way in (infer/preprocess_cuda.h, the DEX_HD functions the kernel runs) on
// the CPU: preprocess_ct_cpu must equal data/preprocess.cpp preprocess_image's CT bit for bit, and
// make_preprocess_record its record, on the real CT and on the phantoms' four storage orientations.
#include <gtest/gtest.h>

#include <cstring>

#include "data/nifti_io.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "infer/preprocess_cuda.h"
#include "tests/testing.h"

namespace dex {
namespace {

void expect_same_as_preprocess_image(const Volume& v, const PreprocessOptions& opt, const std::string& what) {
  Preprocessed ref = preprocess_image(v, opt);
  PreprocessRecord rec = make_preprocess_record(v.shape, v.affine, opt);
  const GridGeometry &a = rec.geometry, &b = ref.record.geometry;
  EXPECT_EQ(a.file_shape, b.file_shape) << what;
  EXPECT_EQ(a.oriented_shape, b.oriented_shape) << what;
  EXPECT_EQ(a.spatial_size, b.spatial_size) << what;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.orientation.perm[i], b.orientation.perm[i]) << what;
    EXPECT_EQ(a.orientation.flip[i], b.orientation.flip[i]) << what;
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(a.oriented_affine[i][j], b.oriented_affine[i][j]) << what;
      EXPECT_EQ(a.file_affine[i][j], b.file_affine[i][j]) << what;
    }
  const PreprocessGeometry p = make_preprocess_geometry(rec);
  const int64_t n = p.grid_voxels();
  ASSERT_EQ(n, ref.ct.size()) << what;
  std::vector<float> x(static_cast<size_t>(3 * n), -7.f);
  preprocess_ct_cpu(p, v.data.data(), x.data(), 3, 0);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::memcmp(&x[3 * i], &ref.ct.data[i], 4), 0)
        << what << ": grid voxel " << i << ": " << x[3 * i] << " vs " << ref.ct.data[i];
    ASSERT_EQ(x[3 * i + 1], -7.f) << what << ": channel 1 touched at " << i;
    ASSERT_EQ(x[3 * i + 2], -7.f) << what << ": channel 2 touched at " << i;
  }
}

TEST(preprocess_layout, equals_preprocess_image_bitwise_on_the_real_ct) {
  Volume v = read_nifti(testing::shared_dir("data/real-ct/imagesTr/case_a.nii.gz"));
  expect_same_as_preprocess_image(v, PreprocessOptions{}, "real CT, 128^3");
}

TEST(preprocess_layout, equals_preprocess_image_bitwise_on_the_four_phantom_orientations) {
  PhantomOptions po;
  bool saw_permuted = false;
  for (auto o : {PhantomOrientation::RAS, PhantomOrientation::LPS, PhantomOrientation::PermutedALS,
                 PhantomOrientation::PermutedSPL}) {
    po.orientation = o;
    Phantom ph = make_phantom(6, static_cast<int64_t>(o), po);
    saw_permuted = saw_permuted || ras_orientation(ph.ct.affine).permutes();
    PreprocessOptions opt;
    opt.spatial_size = {48, 96, 40};  // down- and up-sampling on different axes
    expect_same_as_preprocess_image(ph.ct, opt, phantom_orientation_name(o));
    ASSERT_FALSE(HasFatalFailure());
  }
  EXPECT_TRUE(saw_permuted);
}

}  // namespace
}  // namespace dex
