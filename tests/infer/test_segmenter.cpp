// dex-infer, the Segmenter and the C API: geometry, agreement of the three front ends, errors.
// A tiny DynUNet (random weights, 32^3 grid) keeps these fast; accuracy is tested with trained models elsewhere.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/nifti_io.h"
#include "autograd/tape.h"
#include "infer/dex_c.h"
#include "infer/segmenter.h"
#include "layers/model_file.h"
#include "layers/safetensors.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace dex {
namespace {

std::string tmpdir() {
  static std::string d = [] {
    fs::path p = fs::temp_directory_path() / ("dex_test_infer_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p.string();
  }();
  return d;
}

DynUNetConfig tiny_config(int in_channels = 3) {
  DynUNetConfig c;
  c.in_channels = in_channels;
  c.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  c.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 1}};
  c.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 1}};
  c.filters = {4, 8, 16};
  return c;
}

std::string tiny_model(int in_channels = 3) {
  std::string path = tmpdir() + "/tiny_in" + std::to_string(in_channels) + ".safetensors";
  if (!fs::exists(path)) {
    DynUNet net(tiny_config(in_channels));
    net.init(123);
    // A positive bias on the spleen logit makes the random model segment something, so masks are not all zero.
    ModelInfo info;
    info.spatial_size = {32, 32, 32};
    save_model(path, net, info);
  }
  return path;
}

std::string real_ct() { return testing::shared_dir("data/real-ct/imagesTr/case_a.nii.gz"); }
std::string fixture_image(const std::string& n) { return testing::shared_dir("fixtures/monai-transforms/images/" + n); }
std::string dex_infer() { return std::string(DEX_BINARY_DIR) + "/bin/dex-infer"; }

int run(const std::string& cmd) { return testing::run_logged(cmd, tmpdir() + "/last.log").rc; }
std::string last_log() {
  std::ifstream f(tmpdir() + "/last.log");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

TEST(segmenter, output_has_the_input_geometry_for_flipped_and_axis_permuted_files) {
  Segmenter seg(tiny_model());
  for (auto name : {"flip.nii.gz", "perm_zxy.nii.gz"}) {
    NiftiMeta meta;
    Volume v = read_nifti(fixture_image(name), &meta);
    seg.set_image(v);
    Segmentation r = seg.segment({}, true);
    EXPECT_EQ(r.mask.shape, v.shape) << name;
    EXPECT_EQ(r.probability.shape, v.shape) << name;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(r.mask.affine[i][j], v.affine[i][j]) << name;
    for (size_t i = 0; i < r.mask.data.size(); ++i)
      ASSERT_EQ(r.mask.data[i], r.probability.data[i] > 0.5f ? 1 : 0) << name << " voxel " << i;
  }
}

TEST(segmenter, plan_forward_equals_the_tape_forward_of_the_same_model) {
  // The Segmenter runs an InferencePlan; the training code runs the tape. Same model, same input: same logits.
  const std::string path = tiny_model();
  LoadedModel lm = load_model(path);
  DynUNet net(lm.info.arch);
  load_weights_into(net, lm, path);
  Volume ct = read_nifti(real_ct());
  PreprocessOptions po;
  po.spatial_size = lm.info.spatial_size;
  Preprocessed p = preprocess_image(ct, po);
  Clicks c;
  c.spleen.push_back({20, 40, 95});
  std::vector<float> x = assemble_input_ndhwc(p.ct, map_clicks(c, p.record));
  Arena arena;
  Tape tape(arena);
  NoGradGuard ng(tape);
  const auto& ss = lm.info.spatial_size;
  Tensor in = tape.alloc(ndhwc(1, ss[0], ss[1], ss[2], 3), false);
  std::copy(x.begin(), x.end(), in.data);
  Tensor y = net.forward(tape, in);
  Postprocessed ref = postprocess_logits(y.data, OutputLayout::NDHWC, p.record);

  Segmenter seg(path);
  seg.set_image(ct);
  Segmentation r = seg.segment(c, true);
  EXPECT_EQ(r.mask.data, ref.mask.data);
  EXPECT_CLOSE(r.probability.data.data(), ref.prob_spleen.data.data(), int64_t(ref.prob_spleen.data.size()), 1e-5,
               1e-6, 1e-10);
  EXPECT_GT(seg.plan_bytes(), 0u);
}

TEST(segmenter, a_click_changes_only_the_click_channels_and_is_reproducible) {
  Segmenter seg(tiny_model());
  seg.set_image(read_nifti(real_ct()));
  Segmentation a = seg.segment({}, true);
  Clicks c;
  c.spleen.push_back({20, 40, 95});
  Segmentation b = seg.segment(c, true);
  Segmentation a2 = seg.segment({}, true);
  EXPECT_EQ(a.probability.data, a2.probability.data) << "automatic mode must not remember earlier clicks";
  EXPECT_NE(a.probability.data, b.probability.data) << "a spleen click must change the network input";
  ASSERT_EQ(b.grid_clicks.spleen.size(), 1u);
  // The bundle's own mapping of this click (fixtures/monai-transforms/real_a_click_128 at 128^3) is (20,50,108);
  // at 32^3 the same rule gives trunc(20*32/122), trunc(40*32/101), trunc(95*32/112).
  EXPECT_EQ(b.grid_clicks.spleen[0], (GridPoint{5, 12, 27}));
}

TEST(segmenter, clicks_outside_the_image_are_errors_naming_the_click) {
  Segmenter seg(tiny_model());
  seg.set_image(read_nifti(real_ct()));  // 122 x 101 x 112
  Clicks c;
  c.background.push_back({10, 101, 5});
  try {
    seg.segment(c);
    FAIL() << "no error";
  } catch (const InputError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("background"), std::string::npos) << m;
    EXPECT_NE(m.find("101"), std::string::npos) << m;
  }
  EXPECT_THROW(Segmenter(tmpdir() + "/no_such_model.safetensors"), InputError);
}

TEST(segmenter, a_model_for_another_architecture_is_refused) {
  EXPECT_THROW(Segmenter(tiny_model(1)), InputError);  // 1 input channel: not DeepEdit
  // Weights that do not fit the declared architecture: save a 4-8-16 network under a 4-8-32 config.
  DynUNet net(tiny_config());
  net.init(1);
  ModelInfo info;
  info.arch = tiny_config();
  info.arch.filters = {4, 8, 32};
  std::string path = tmpdir() + "/mismatch.safetensors";
  save_safetensors(path, net.state_dict(), model_metadata(info));
  try {
    Segmenter s(path);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("architecture"), std::string::npos) << e.what();
  }
}

TEST(dex_infer, cli_cpp_api_and_c_api_give_identical_masks_on_the_real_ct) {
  const std::string model = tiny_model(), out = tmpdir() + "/cli_seg.nii.gz", clicks = tmpdir() + "/clicks.json";
  {
    std::ofstream f(clicks);
    f << R"({"spleen": [[20, 40, 95]], "background": [[60, 60, 60]]})";
  }
  ASSERT_EQ(run(dex_infer() + " --model " + model + " --image " + real_ct() + " --clicks " + clicks +
                " --click background:95,45,100 --out " + out + " --preview " + tmpdir() + "/p.png --timing"),
            0)
      << last_log();
  NiftiMeta in_meta, out_meta;
  Volume ct = read_nifti(real_ct(), &in_meta);
  LabelVolume cli = read_nifti_labels(out, &out_meta);
  EXPECT_EQ(cli.shape, ct.shape);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(out_meta.affine[i][j], in_meta.affine[i][j], 1e-5);
  EXPECT_EQ(out_meta.datatype, 2) << "uint8 label map expected (DT_UINT8 = 2)";

  Clicks c;
  c.spleen.push_back({20, 40, 95});
  c.background.push_back({60, 60, 60});
  c.background.push_back({95, 45, 100});
  Segmenter seg(model);
  seg.set_image(ct);
  LabelVolume cpp = seg.segment(c).mask;
  EXPECT_EQ(cpp.data, cli.data);

  dex_segmenter* h = nullptr;
  char err[512];
  ASSERT_EQ(dex_segmenter_create(model.c_str(), "cpu", "fp32", &h, err, sizeof err), DEX_OK) << err;
  ASSERT_EQ(dex_segmenter_set_image_file(h, real_ct().c_str()), DEX_OK) << dex_segmenter_error(h);
  int64_t shape[3];
  ASSERT_EQ(dex_segmenter_image_shape(h, shape), DEX_OK);
  std::vector<uint8_t> mask(size_t(shape[0] * shape[1] * shape[2]));
  const double sp[3] = {20, 40, 95}, bg[6] = {60, 60, 60, 95, 45, 100};
  ASSERT_EQ(dex_segmenter_segment(h, sp, 1, bg, 2, mask.data(), mask.size(), nullptr, 0), DEX_OK)
      << dex_segmenter_error(h);
  EXPECT_EQ(mask, cpp.data);
  // A too-small buffer and an out-of-image click are reported, not crashed on.
  EXPECT_EQ(dex_segmenter_segment(h, sp, 1, bg, 2, mask.data(), 10, nullptr, 0), DEX_ERR_ARGUMENT);
  const double outside[3] = {-1, 0, 0};
  EXPECT_EQ(dex_segmenter_segment(h, outside, 1, nullptr, 0, mask.data(), mask.size(), nullptr, 0), DEX_ERR_INPUT);
  EXPECT_NE(std::string(dex_segmenter_error(h)).find("spleen"), std::string::npos);
  dex_segmenter_destroy(h);
  EXPECT_NE(dex_segmenter_create("/nonexistent.safetensors", "cpu", "fp32", &h, err, sizeof err), DEX_OK);
  EXPECT_EQ(h, nullptr);

  // The preview is a PNG; the timing JSON names every stage.
  std::ifstream png(tmpdir() + "/p.png", std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  std::ifstream tj(tmpdir() + "/cli_seg.timing.json");
  std::string timing((std::istreambuf_iterator<char>(tj)), std::istreambuf_iterator<char>());
  for (auto stage : {"read", "orient", "window", "resize", "heatmaps", "upload", "forward", "download", "way back", "write"})
    EXPECT_NE(timing.find(std::string("\"") + stage + "\""), std::string::npos) << stage << " missing in " << timing;
}

TEST(dex_infer, float32_output_matches_the_uint8_mask) {
  const std::string model = tiny_model();
  const std::string u8 = tmpdir() + "/auto_u8.nii.gz", f32 = tmpdir() + "/auto_f32.nii.gz";
  ASSERT_EQ(run(dex_infer() + " --model " + model + " --image " + real_ct() + " --out " + u8), 0) << last_log();
  ASSERT_EQ(run(dex_infer() + " --model " + model + " --image " + real_ct() + " --out " + f32 + " --output-dtype float32"),
            0)
      << last_log();
  NiftiMeta m;
  Volume f = read_nifti(f32, &m);
  EXPECT_EQ(m.datatype, 16) << "DT_FLOAT32";
  LabelVolume l = read_nifti_labels(u8);
  ASSERT_EQ(f.data.size(), l.data.size());
  for (size_t i = 0; i < l.data.size(); ++i) ASSERT_EQ(f.data[i], float(l.data[i]));
}

TEST(dex_infer, batch_mode_writes_every_imagesTs_case_as_the_bundle_names_it) {
  const std::string ds = tmpdir() + "/batch_ds", out = tmpdir() + "/batch_out";
  fs::create_directories(ds + "/imagesTs");
  fs::create_directories(out);
  fs::copy_file(fixture_image("flip.nii.gz"), ds + "/imagesTs/case_b.nii.gz", fs::copy_options::overwrite_existing);
  fs::copy_file(real_ct(), ds + "/imagesTs/case_a.nii.gz", fs::copy_options::overwrite_existing);
  ASSERT_EQ(run(dex_infer() + " --config " + std::string(DEX_SOURCE_DIR) + "/configs/inference.json --dataset-dir " + ds +
                " --output-dir " + out + " --model " + tiny_model()),
            0)
      << last_log();
  for (auto name : {"case_a", "case_b"}) {
    std::string f = out + "/" + name + "/" + name + "_trans.nii.gz";
    ASSERT_TRUE(fs::exists(f)) << f << "\n" << last_log();
    NiftiMeta m, in;
    read_nifti(ds + "/imagesTs/" + name + ".nii.gz", &in);
    Volume v = read_nifti(f, &m);
    EXPECT_EQ(m.datatype, 16) << "the bundle writes float32 0/1";
    EXPECT_EQ(v.shape, in.shape);
  }
  // A missing output folder is an error, not created silently.
  EXPECT_EQ(run(dex_infer() + " --config " + std::string(DEX_SOURCE_DIR) + "/configs/inference.json --dataset-dir " + ds +
                " --output-dir " + tmpdir() + "/no_such_out --model " + tiny_model()),
            2);
}

TEST(dex_infer, bad_input_gives_a_clear_error_exit_2_and_writes_nothing) {
  const std::string model = tiny_model(), out = tmpdir() + "/never.nii.gz";
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"--model " + tmpdir() + "/missing.safetensors --image " + real_ct() + " --out " + out, "does not exist"},
      {"--model " + model + " --image " + tmpdir() + "/missing.nii.gz --out " + out, "does not exist"},
      {"--model " + model + " --image " + real_ct() + " --out /nonexistent_dir/seg.nii.gz", "folder does not exist"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --click spleen:1,2,300", "spleen"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --click liver:1,2,3", "unknown label"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --click spleen:1,2", "three"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --device tpu", "cpu or cuda"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --precision fp16", "fp16"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --bogus 1", "unknown option"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --use-click no", "expected true or false"},
      {"--model " + model + " --image " + real_ct() + " --out " + out + " --clicks " + tmpdir() + "/none.json",
       "click file"},
      {"--model " + real_ct() + " --image " + real_ct() + " --out " + out, "model"},
      {"--model " + model + " --image " + model + " --out " + out, "NIfTI"},
  };
  for (auto& c : cases) {
    EXPECT_EQ(run(dex_infer() + " " + c.args), 2) << c.args << "\n" << last_log();
    EXPECT_NE(last_log().find(c.expect), std::string::npos) << c.args << "\n" << last_log();
    EXPECT_FALSE(fs::exists(out)) << c.args;
  }
}

}  // namespace
}  // namespace dex
