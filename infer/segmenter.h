// dex::Segmenter: the DeepEdit model loaded once, an image preprocessed once, then any number of segment() calls
// (automatic: no clicks; interactive: clicks in the file's voxel indices). The forward runs an InferencePlan built
// at construction (no allocation per call; CUDA: one graph replay). After set_image() the windowed CT channel is
// kept: a new click recomputes only the two heatmaps, one forward and the way back. Thread-safe per instance (calls on one instance serialise); no global
// state. Errors are dex::InputError (the caller's input) or dex::Error.
//
// CPU: set_image keeps a host 3-channel input; segment() builds the heatmaps on the host, uploads the input, runs the
// plan, downloads the logits and runs data/preprocess.h postprocess_logits.
// CUDA: set_image uploads the file's voxels once and preprocesses them on the device (infer/preprocess_cuda.h:
// orientation, window, area resize, bit-equal to the CPU's) into channel 0 of the plan's input, which the plan
// keeps intact (keep_input); segment()
// writes the two heatmaps into channels 1 and 2 on the device (infer/click_channels_cuda.h), replays the plan's
// graph, runs the way back on the device (infer/way_back_cuda.h: area resize, argmax, inverse orientation, written in
// file order) and downloads the final mask once (and the spleen probability when asked). Stage times on CUDA are
// device-synchronised: set_image records upload and preprocess; segment() heatmaps, forward, way back, download.
#pragma once
#include <array>
#include <memory>
#include <mutex>
#include <string>

#include "data/clicks.h"
#include "data/nifti_io.h"
#include "data/preprocess.h"
#include "infer/inference_plan.h"
#include "infer/stage_timer.h"
#include "infer/way_back_cuda.h"
#include "kernels/arena.h"
#include "layers/model_file.h"

namespace dex {

enum class Precision { FP32, FP16 };

struct SegmenterOptions {
  Device device = Device::CPU;
  Precision precision = Precision::FP32;  // FP16 only on CUDA
  bool bundle_click_mapping = false;      // reproduce the bundle's §13.2 click mapping quirk (tests)
};

struct Segmentation {
  LabelVolume mask;     // uint8 0/1, the input's grid and affine
  Volume probability;   // spleen probability in the input's grid (filled when requested)
  GridClicks grid_clicks;  // where the clicks landed on the network grid
};

class Segmenter {
 public:
  Segmenter(const std::string& model_path, const SegmenterOptions& options = {});
  ~Segmenter();
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // Preprocesses `image` (as read from its file: array order and affine of the file). Keeps the CT channel.
  void set_image(const Volume& image);
  bool has_image() const;
  // Segments with `clicks` (empty: automatic mode). Clicks are validated against the image (InputError naming
  // the click). `with_probability` also returns the spleen probability map.
  Segmentation segment(const Clicks& clicks = {}, bool with_probability = false);

  const ModelInfo& model_info() const { return m_info; }
  const SegmenterOptions& options() const { return m_options; }
  // Stage times of the last set_image + segment calls (orient/window/resize, heatmaps, upload, forward, way back).
  StageTimer last_timings() const;
  // Device memory the inference plan holds (activations, weights, workspace), fixed at construction.
  size_t plan_bytes() const;

 private:
  mutable std::mutex m_mutex;
  SegmenterOptions m_options;
  ModelInfo m_info;
  std::unique_ptr<InferencePlan> m_plan;  // built once: packed weights, every buffer allocated up front
  bool m_has_image = false;
  PreprocessRecord m_record;
  std::vector<float> m_input;  // NDHWC [D][H][W][3] host staging: channel 0 = CT (set once), 1-2 heatmaps (CPU)
  StageTimer m_timer;
  // CUDA: the way back's geometry and device buffers (mask and probability in file voxels, heatmap scratch);
  // reallocated only when an image of another size is set.
  WayBackGeometry m_way_back;
  Buffer m_dev_file, m_dev_mask, m_dev_prob, m_dev_scratch;
  void set_image_cuda(const Volume& image, const PreprocessOptions& opt);
  Segmentation segment_cuda(const Clicks& clicks, bool with_probability);
};

}  // namespace dex
