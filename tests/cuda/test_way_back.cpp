// The GPU way back (infer/way_back_cuda.cu) against its CPU reference (infer/way_back_cuda.h way_back_cpu, itself
// equal bit for bit to data/preprocess.cpp postprocess_logits: tests/infer/test_way_back_layout.cpp), and the
// Segmenter's CUDA click path against its CPU path. Skips (with the reason) where no CUDA device is present.
//
// Tolerances: from probabilities the kernel does the CPU's float operations in the same order (sums, divisions:
// IEEE on both sides, no fused multiply-add possible), so mask and probability are bit-equal. From logits the only
// difference is expf (CUDA: <= 2 ulp; glibc: < 1 ulp): each softmax term differs by a few ulp, i.e. < 1e-6 absolute
// for values <= 1, and the window average keeps that bound; so the probability is compared with atol 1e-6 and a mask
// voxel may differ only where the CPU's |p_spleen - p_background| < 2e-6 (a near-tie).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "data/phantom.h"
#include "data/preprocess.h"
#include "infer/segmenter.h"
#include "infer/way_back_cuda.h"
#include "kernels/backend.h"
#include "layers/model_file.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace dex {
namespace {

#define SKIP_WITHOUT_CUDA()                                                        \
  do {                                                                             \
    std::string why_;                                                              \
    if (!backend_available(Device::CUDA, &why_)) GTEST_SKIP() << "CUDA backend not available: " << why_; \
  } while (0)

// A geometry as preprocess_image records it: file shape, the storage's orientation to RAS, the grid.
GridGeometry geometry(std::array<int64_t, 3> file, PhantomOrientation storage, std::array<int64_t, 3> grid) {
  GridGeometry g;
  g.file_shape = file;
  g.orientation = phantom_storage(storage).inverse();
  g.oriented_shape = g.orientation.out_shape(file);
  g.spatial_size = grid;
  return g;
}

struct Case {
  const char* name;
  GridGeometry g;
};
std::vector<Case> cases() {
  return {
      {"real CT 122x101x112 RAS, 128^3", geometry({122, 101, 112}, PhantomOrientation::RAS, {128, 128, 128})},
      {"512x512x100 LPS, 128^3", geometry({512, 512, 100}, PhantomOrientation::LPS, {128, 128, 128})},
      {"70x90x60 ALS, 48x96x40", geometry({70, 90, 60}, PhantomOrientation::PermutedALS, {48, 96, 40})},
      {"70x90x60 SPL, 48x96x40", geometry({70, 90, 60}, PhantomOrientation::PermutedSPL, {48, 96, 40})},
  };
}

constexpr size_t kGuard = 256;  // guard band bytes on each side of the device mask and probability
constexpr uint8_t kSentinel = 0xA5;

// Runs way_back_cuda on `in` (host, [grid][2]) with guard bands around both outputs; checks the bands.
void run_gpu(const WayBackGeometry& g, const std::vector<float>& in, bool from_logits, std::vector<uint8_t>& mask,
             std::vector<float>& prob) {
  const Backend& be = backend(Device::CUDA);
  const size_t n = size_t(g.file_voxels());
  Buffer din(*be.allocator, in.size() * 4), dm(*be.allocator, n + 2 * kGuard), dp(*be.allocator, 4 * n + 2 * kGuard);
  be.copy(din.data(), Device::CUDA, in.data(), Device::CPU, in.size() * 4, nullptr);
  std::vector<uint8_t> fill_m(n + 2 * kGuard, kSentinel), fill_p(4 * n + 2 * kGuard, kSentinel);
  be.copy(dm.data(), Device::CUDA, fill_m.data(), Device::CPU, fill_m.size(), nullptr);
  be.copy(dp.data(), Device::CUDA, fill_p.data(), Device::CPU, fill_p.size(), nullptr);
  way_back_cuda(g, din.as<float>(), from_logits, dm.as<uint8_t>() + kGuard,
                reinterpret_cast<float*>(dp.as<uint8_t>() + kGuard), nullptr);
  be.synchronize(nullptr);
  be.copy(fill_m.data(), Device::CPU, dm.data(), Device::CUDA, fill_m.size(), nullptr);
  be.copy(fill_p.data(), Device::CPU, dp.data(), Device::CUDA, fill_p.size(), nullptr);
  for (size_t i = 0; i < kGuard; ++i) {
    ASSERT_EQ(fill_m[i], kSentinel) << "mask guard band before the output overwritten at " << i;
    ASSERT_EQ(fill_m[kGuard + n + i], kSentinel) << "mask guard band after the output overwritten at " << i;
    ASSERT_EQ(fill_p[i], kSentinel) << "probability guard band before the output overwritten at " << i;
    ASSERT_EQ(fill_p[kGuard + 4 * n + i], kSentinel) << "probability guard band after the output overwritten";
  }
  mask.assign(fill_m.begin() + kGuard, fill_m.begin() + kGuard + n);
  prob.resize(n);
  std::memcpy(prob.data(), fill_p.data() + kGuard, 4 * n);
}

TEST(way_back_cuda, from_probabilities_equals_the_cpu_way_back_bitwise) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 40;
  for (const Case& c : cases()) {
    const WayBackGeometry g = make_way_back_geometry(c.g);
    std::vector<float> logits = testing::random_vector(2 * g.grid_voxels(), ++seed, -6.f, 6.f);
    std::vector<float> probs(logits.size());
    for (int64_t v = 0; v < g.grid_voxels(); ++v)
      way_back_softmax2(logits[2 * v], logits[2 * v + 1], &probs[2 * v], &probs[2 * v + 1]);
    const size_t n = size_t(g.file_voxels());
    std::vector<uint8_t> ref_m(n), m;
    std::vector<float> ref_p(n), p;
    way_back_cpu(g, probs.data(), false, ref_m.data(), ref_p.data());
    run_gpu(g, probs, false, m, p);
    ASSERT_FALSE(HasFatalFailure()) << c.name;
    int64_t spleen = 0;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(m[i], ref_m[i]) << c.name << ": mask at file voxel " << i << " (seed " << seed << ")";
      ASSERT_EQ(std::memcmp(&p[i], &ref_p[i], 4), 0) << c.name << ": probability at file voxel " << i << ": " << p[i]
                                                     << " vs " << ref_p[i];
      spleen += m[i];
    }
    EXPECT_GT(spleen, 0) << c.name;
    EXPECT_LT(spleen, int64_t(n)) << c.name;
  }
}

TEST(way_back_cuda, from_logits_matches_postprocess_logits_except_near_ties) {
  SKIP_WITHOUT_CUDA();
  uint64_t seed = 60;
  for (const Case& c : cases()) {
    const WayBackGeometry g = make_way_back_geometry(c.g);
    for (bool ties : {false, true}) {  // real-valued logits, then small integers (exact ties)
      std::vector<float> logits = ties ? testing::random_ints(2 * g.grid_voxels(), ++seed, -2, 2)
                                       : testing::random_vector(2 * g.grid_voxels(), ++seed, -6.f, 6.f);
      PreprocessRecord rec;
      rec.geometry = c.g;
      Postprocessed ref = postprocess_logits(logits.data(), OutputLayout::NDHWC, rec);
      std::vector<uint8_t> m;
      std::vector<float> p;
      run_gpu(g, logits, true, m, p);
      ASSERT_FALSE(HasFatalFailure()) << c.name;
      int64_t differ = 0;
      double worst = 0;
      for (size_t i = 0; i < m.size(); ++i) {
        const float r = ref.prob_spleen.data[i];
        worst = std::max(worst, double(std::fabs(p[i] - r)));
        ASSERT_LE(std::fabs(p[i] - r), 1e-6f) << c.name << ": probability at file voxel " << i << ": " << p[i]
                                              << " vs " << r << " (seed " << seed << ")";
        if (m[i] != ref.mask.data[i]) {
          ++differ;
          // background probability of the CPU way back: 1 - p is not exact, recompute from the reference mask's rule
          ASSERT_LT(std::fabs(2.f * r - 1.f), 4e-6f)
              << c.name << ": mask differs at file voxel " << i << " where the CPU's spleen probability is " << r;
        }
      }
      std::printf("[ way_back ] %s%s: worst |dp| %.2e, %lld near-tie mask voxels differ of %zu\n", c.name,
                  ties ? " (integer logits)" : "", worst, static_cast<long long>(differ), m.size());
    }
  }
}

DynUNetConfig tiny_config() {
  DynUNetConfig c;
  c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 1}};
  c.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 1}};
  c.filters = {8, 16, 32};  // multiples of 8 (the f16 path's preference)
  return c;
}

std::string tiny_model() {
  static std::string path = [] {
    fs::path p = fs::temp_directory_path() / ("dex_test_way_back_" + std::to_string(::getpid()) + ".safetensors");
    DynUNet net(tiny_config());
    net.init(321);
    ModelInfo info;
    info.spatial_size = {32, 32, 32};
    save_model(p.string(), net, info);
    return p.string();
  }();
  return path;
}

// CUDA Segmenter (f32 and f16) vs the CPU Segmenter on an axis-permuted phantom, automatic and with clicks.
TEST(way_back_cuda, segmenter_on_cuda_matches_the_cpu_segmenter) {
  SKIP_WITHOUT_CUDA();
  PhantomOptions po;
  po.orientation = PhantomOrientation::PermutedSPL;
  Phantom ph = make_phantom(9, 2, po);
  Clicks clicks;
  clicks.spleen.push_back({double(ph.ct.shape[0] / 2), double(ph.ct.shape[1] / 3), double(ph.ct.shape[2] / 2)});
  clicks.background.push_back({1.0, 2.0, 3.0});
  Segmenter cpu(tiny_model());
  cpu.set_image(ph.ct);
  for (Precision prec : {Precision::FP32, Precision::FP16}) {
    SegmenterOptions so;
    so.device = Device::CUDA;
    so.precision = prec;
    Segmenter gpu(tiny_model(), so);
    gpu.set_image(ph.ct);
    // fp32: the CUDA kernels sum in another order than the CPU's (relative differences ~1e-6 per layer, a few
    // layers): probabilities within 1e-4. fp16 activations and weights: within 2e-2 (u = 4.9e-4, ~10 layers).
    const float ptol = prec == Precision::FP32 ? 1e-4f : 2e-2f;
    for (int k = 0; k < 3; ++k) {  // automatic, with clicks, automatic again (the heatmaps are cleared)
      const Clicks c = k == 1 ? clicks : Clicks{};
      Segmentation r = cpu.segment(c, true), g = gpu.segment(c, true);
      const char* what = prec == Precision::FP32 ? "fp32" : "fp16";
      ASSERT_EQ(g.mask.shape, ph.ct.shape) << what;
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) ASSERT_DOUBLE_EQ(g.mask.affine[i][j], ph.ct.affine[i][j]);
      ASSERT_EQ(g.grid_clicks.spleen, r.grid_clicks.spleen);
      ASSERT_EQ(g.grid_clicks.background, r.grid_clicks.background);
      int64_t differ = 0;
      for (size_t i = 0; i < g.mask.data.size(); ++i) {
        ASSERT_NEAR(g.probability.data[i], r.probability.data[i], ptol) << what << " call " << k << " voxel " << i;
        if (g.mask.data[i] != r.mask.data[i]) {
          ++differ;
          ASSERT_LT(std::fabs(r.probability.data[i] - 0.5f), ptol) << what << " call " << k << " voxel " << i;
        }
      }
      EXPECT_LE(differ, int64_t(g.mask.data.size() / 100)) << what << " call " << k;
    }
    StageTimer t = gpu.last_timings();
    for (auto stage : {"upload", "heatmaps", "forward", "way back", "download"})
      EXPECT_GT(t.get(stage), 0.0) << "stage " << stage << " missing from the CUDA timings";
  }
}

}  // namespace
}  // namespace dex
