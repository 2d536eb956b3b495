#include "infer/segmenter.h"

#include "data/click_guidance.h"
#include "infer/click_channels_cuda.h"
#include "infer/preprocess_cuda.h"
#include "kernels/backend.h"

namespace dex {

Segmenter::Segmenter(const std::string& model_path, const SegmenterOptions& options) : m_options(options) {
  std::string why;
  DEX_INPUT_CHECK(backend_available(options.device, &why), "device '", device_name(options.device),
                  "' is not available: ", why);
  DEX_INPUT_CHECK(options.precision == Precision::FP32 || options.device == Device::CUDA,
                  "precision fp16 needs --device cuda (the CPU path is fp32)");
  LoadedModel m = load_model(model_path);
  m_info = m.info;
  DEX_INPUT_CHECK(m_info.arch.in_channels == 3 && m_info.arch.out_channels == 2, "model '", model_path,
                  "' has ", m_info.arch.in_channels, " input and ", m_info.arch.out_channels,
                  " output channels; DeepEdit needs 3 (CT, spleen clicks, background clicks) and 2");
  auto ts = m_info.arch.total_stride();
  for (int a = 0; a < 3; ++a)
    DEX_INPUT_CHECK(m_info.spatial_size[a] % ts[a] == 0, "model '", model_path, "': spatial_size ",
                    m_info.spatial_size[a], " on axis ", a, " is not a multiple of the network's stride ", ts[a]);
  // The network exists only to build the plan: the plan packs its own copy of the weights.
  DynUNet net(m_info.arch, Device::CPU);
  load_weights_into(net, m, model_path);
  PlanOptions po;
  po.device = options.device;
  po.precision = options.precision == Precision::FP16 ? DType::F16 : DType::F32;
  // CUDA: the input is uploaded once per image and only its heatmap channels are rewritten per segment().
  po.keep_input = options.device == Device::CUDA;
  const auto& ss = m_info.spatial_size;
  m_plan = std::make_unique<InferencePlan>(net, Int3{int(ss[0]), int(ss[1]), int(ss[2])}, po);
  if (options.device == Device::CUDA)
    m_dev_scratch = Buffer(*backend(Device::CUDA).allocator,
                           size_t(click_channels_scratch_floats(ss[0] * ss[1] * ss[2])) * sizeof(float));
}

Segmenter::~Segmenter() = default;

void Segmenter::set_image(const Volume& image) {
  std::lock_guard<std::mutex> lock(m_mutex);
  m_timer.clear();
  PreprocessOptions opt;
  opt.spatial_size = m_info.spatial_size;
  opt.a_min = m_info.a_min;
  opt.a_max = m_info.a_max;
  opt.bundle_compat = m_options.bundle_click_mapping;
  if (m_options.device == Device::CUDA) {
    set_image_cuda(image, opt);
    return;
  }
  PreprocessTimes pt;
  Preprocessed p = preprocess_image(image, opt, &pt);
  m_timer.add("orient", pt.orient_ms);
  m_timer.add("window", pt.window_ms);
  m_timer.add("resize", pt.resize_ms);
  m_record = p.record;
  const int64_t n = p.ct.size();
  m_input.assign(static_cast<size_t>(n) * 3, 0.f);
  for (int64_t v = 0; v < n; ++v) m_input[v * 3] = p.ct.data[v];
  m_has_image = true;
}

bool Segmenter::has_image() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_has_image;
}

Segmentation Segmenter::segment(const Clicks& clicks, bool with_probability) {
  std::lock_guard<std::mutex> lock(m_mutex);
  DEX_INPUT_CHECK(m_has_image, "segment() called before set_image()");
  // Keep the preprocessing stages of set_image, replace the per-segment ones.
  StageTimer kept;
  for (auto name : {"orient", "window", "resize"})
    if (m_timer.get(name) > 0) kept.add(name, m_timer.get(name));
  if (m_options.device == Device::CUDA)
    for (auto name : {"upload", "preprocess"})
      if (m_timer.get(name) > 0) kept.add(name, m_timer.get(name));
  m_timer = kept;
  if (m_options.device == Device::CUDA) return segment_cuda(clicks, with_probability);

  Segmentation out;
  const auto& ss = m_info.spatial_size;
  const std::array<int, 3> shape{int(ss[0]), int(ss[1]), int(ss[2])};
  m_timer.time("heatmaps", [&] {
    out.grid_clicks = map_clicks(clicks, m_record);
    gaussian_heatmap_into(out.grid_clicks.spleen, shape, m_input.data() + 1, 3, kGuidanceSigma);
    gaussian_heatmap_into(out.grid_clicks.background, shape, m_input.data() + 2, 3, kGuidanceSigma);
  });

  m_timer.time("upload", [&] { m_plan->upload(m_input.data()); });
  m_timer.time("forward", [&] { m_plan->run(); });
  std::vector<float> logits = m_timer.time("download", [&] { return m_plan->logits_host(); });
  Postprocessed post =
      m_timer.time("way back", [&] { return postprocess_logits(logits.data(), OutputLayout::NDHWC, m_record); });
  out.mask = std::move(post.mask);
  if (with_probability) out.probability = std::move(post.prob_spleen);
  return out;
}

#if defined(DEX_HAVE_CUDA)
void Segmenter::set_image_cuda(const Volume& image, const PreprocessOptions& opt) {
  const Backend& be = backend(Device::CUDA);
  DEX_CHECK(static_cast<int64_t>(image.data.size()) == image.size() && image.size() > 0,
            "Segmenter::set_image: empty volume or data size does not match the shape");
  m_has_image = false;  // until the new image is on the device
  m_record = make_preprocess_record(image.shape, image.affine, opt);
  const PreprocessGeometry pg = make_preprocess_geometry(m_record);
  m_way_back = make_way_back_geometry(m_record.geometry);
  const size_t voxels = image.data.size();
  if (m_dev_file.size() != voxels * sizeof(float)) {  // free first: the peak stays one image and one mask
    m_dev_file = Buffer();
    m_dev_mask = Buffer();
    m_dev_prob = Buffer();
    m_dev_file = Buffer(*be.allocator, voxels * sizeof(float));
    m_dev_mask = Buffer(*be.allocator, voxels);
  }
  // The file's voxels go to the device once; orientation, window and area resize run there, into the CT channel of
  // the plan's input (kept intact by the plan: keep_input); segment() rewrites only the heatmap channels.
  m_timer.time("upload", [&] {
    be.copy(m_dev_file.data(), Device::CUDA, image.data.data(), Device::CPU, voxels * sizeof(float), nullptr);
  });
  m_timer.time("preprocess", [&] {
    preprocess_ct_cuda(pg, m_dev_file.as<float>(), m_plan->input(), 3, 0, nullptr);
    be.synchronize(nullptr);
  });
  m_has_image = true;
}

Segmentation Segmenter::segment_cuda(const Clicks& clicks, bool with_probability) {
  const Backend& be = backend(Device::CUDA);
  Segmentation out;
  const auto& ss = m_info.spatial_size;
  const int64_t grid[3] = {ss[0], ss[1], ss[2]};
  m_timer.time("heatmaps", [&] {
    out.grid_clicks = map_clicks(clicks, m_record);
    float* scratch = m_dev_scratch.as<float>();
    click_channel_cuda(grid, out.grid_clicks.spleen, kGuidanceSigma, m_plan->input(), 3, 1, scratch, nullptr);
    click_channel_cuda(grid, out.grid_clicks.background, kGuidanceSigma, m_plan->input(), 3, 2, scratch, nullptr);
    be.synchronize(nullptr);  // the plan runs on its own stream: the heatmaps must be complete first
  });
  m_timer.time("forward", [&] { m_plan->run(); });  // one graph replay; returns when it is done
  const int64_t n = m_way_back.file_voxels();
  float* prob = nullptr;
  if (with_probability) {
    if (m_dev_prob.size() != size_t(n) * sizeof(float)) m_dev_prob = Buffer(*be.allocator, size_t(n) * sizeof(float));
    prob = m_dev_prob.as<float>();
  }
  m_timer.time("way back", [&] {
    way_back_cuda(m_way_back, m_plan->logits(), true, m_dev_mask.as<uint8_t>(), prob, nullptr);
    be.synchronize(nullptr);
  });
  const GridGeometry& g = m_record.geometry;
  m_timer.time("download", [&] {
    out.mask.shape = g.file_shape;
    out.mask.affine = g.file_affine;
    out.mask.data.resize(size_t(n));
    be.copy(out.mask.data.data(), Device::CPU, m_dev_mask.data(), Device::CUDA, size_t(n), nullptr);
    if (prob) {
      out.probability.shape = g.file_shape;
      out.probability.affine = g.file_affine;
      out.probability.data.resize(size_t(n));
      be.copy(out.probability.data.data(), Device::CPU, prob, Device::CUDA, size_t(n) * sizeof(float), nullptr);
    }
  });
  return out;
}
#else
void Segmenter::set_image_cuda(const Volume&, const PreprocessOptions&) {
  throw Error("Segmenter: dex was built without CUDA (the constructor should have refused device cuda)");
}
Segmentation Segmenter::segment_cuda(const Clicks&, bool) {
  throw Error("Segmenter: dex was built without CUDA (the constructor should have refused device cuda)");
}
#endif

StageTimer Segmenter::last_timings() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_timer;
}

size_t Segmenter::plan_bytes() const {
  std::lock_guard<std::mutex> lock(m_mutex);
  return m_plan->memory().total();
}

}  // namespace dex
