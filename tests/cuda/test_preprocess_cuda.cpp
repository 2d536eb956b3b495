// The GPU way in (infer/preprocess_cuda.cu) against its CPU reference (infer/preprocess_cuda.h preprocess_ct_cpu,
// itself bit-equal to data/preprocess.cpp preprocess_image: tests/infer/test_preprocess_layout.cpp). The kernel does
// the same fp32 operations in the same order (no contraction: explicit _rn multiply and add; IEEE division), so the
// CT channel must be bit-equal; channels 1 and 2 and guard bands around the buffer must be untouched.
// Skips (with the reason) where no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>

#include "data/phantom.h"
#include "infer/preprocess_cuda.h"
#include "kernels/backend.h"
#include "tests/testing.h"

namespace dex {
namespace {

void check_case(const std::array<int64_t, 3>& file_shape, const Mat4& affine, const std::vector<float>& voxels,
                std::array<int64_t, 3> grid, const std::string& what) {
  const Backend& be = backend(Device::CUDA);
  PreprocessOptions opt;
  opt.spatial_size = grid;
  const PreprocessGeometry p = make_preprocess_geometry(make_preprocess_record(file_shape, affine, opt));
  const int64_t n = p.grid_voxels();
  constexpr int64_t kGuard = 64;  // floats on each side
  const float sentinel = -12345.f;
  std::vector<float> ref(static_cast<size_t>(3 * n + 2 * kGuard), sentinel);
  preprocess_ct_cpu(p, voxels.data(), ref.data() + kGuard, 3, 0);
  Buffer dfile(*be.allocator, voxels.size() * 4), dout(*be.allocator, ref.size() * 4);
  be.copy(dfile.data(), Device::CUDA, voxels.data(), Device::CPU, voxels.size() * 4, nullptr);
  std::vector<float> got(ref.size(), sentinel);
  be.copy(dout.data(), Device::CUDA, got.data(), Device::CPU, got.size() * 4, nullptr);
  preprocess_ct_cuda(p, dfile.as<float>(), dout.as<float>() + kGuard, 3, 0, nullptr);
  be.synchronize(nullptr);
  be.copy(got.data(), Device::CPU, dout.data(), Device::CUDA, got.size() * 4, nullptr);
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::memcmp(&got[i], &ref[i], 4), 0) << what << ": element " << i << " (guard " << kGuard
                                                   << " floats, then [grid][3]): " << got[i] << " vs " << ref[i];
}

TEST(preprocess_cuda, equals_the_cpu_way_in_bitwise) {
  std::string why;
  if (!backend_available(Device::CUDA, &why)) GTEST_SKIP() << "CUDA backend not available: " << why;
  PhantomOptions po;
  for (auto o : {PhantomOrientation::RAS, PhantomOrientation::LPS, PhantomOrientation::PermutedALS,
                 PhantomOrientation::PermutedSPL}) {
    po.orientation = o;
    Phantom ph = make_phantom(6, static_cast<int64_t>(o), po);
    check_case(ph.ct.shape, ph.ct.affine, ph.ct.data, {48, 96, 40}, phantom_orientation_name(o));
    ASSERT_FALSE(HasFatalFailure());
  }
  // The bench's 512 x 512 x 100 LPS geometry at 128^3, random HU values (in and out of the window).
  Mat4 lps = mat4_identity();
  lps[0][0] = -0.8;
  lps[1][1] = -0.8;
  lps[2][2] = 2.5;
  const std::array<int64_t, 3> shape{512, 512, 100};
  check_case(shape, lps, testing::random_vector(512 * 512 * 100, 77, -1200.f, 1500.f), {128, 128, 128},
             "512x512x100 LPS");
}

}  // namespace
}  // namespace dex
