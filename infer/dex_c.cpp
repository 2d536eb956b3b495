#include "infer/dex_c.h"

#include <cstring>
#include <string>

#include "data/nifti_io.h"
#include "infer/segmenter.h"

struct dex_segmenter {
  std::unique_ptr<dex::Segmenter> seg;
  std::array<int64_t, 3> shape{0, 0, 0};
  std::string error;
};

namespace {
void copy_message(const std::string& m, char* err, size_t len) {
  if (!err || len == 0) return;
  size_t n = std::min(m.size(), len - 1);
  std::memcpy(err, m.data(), n);
  err[n] = '\0';
}
template <class F>
dex_status guarded(dex_segmenter* s, F&& fn) {
  try {
    fn();
    s->error.clear();
    return DEX_OK;
  } catch (const dex::InputError& e) {
    s->error = e.what();
    return DEX_ERR_INPUT;
  } catch (const std::exception& e) {
    s->error = e.what();
    return DEX_ERR_INTERNAL;
  } catch (...) {
    s->error = "unknown error";
    return DEX_ERR_INTERNAL;
  }
}
std::vector<dex::Click> to_clicks(const double* p, size_t n) {
  std::vector<dex::Click> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = {p[3 * i], p[3 * i + 1], p[3 * i + 2]};
  return v;
}
}  // namespace

extern "C" {

dex_status dex_segmenter_create(const char* model_path, const char* device, const char* precision,
                                dex_segmenter** out, char* err, size_t err_len) {
  if (!model_path || !out) {
    copy_message("dex_segmenter_create: model_path and out must not be NULL", err, err_len);
    return DEX_ERR_ARGUMENT;
  }
  *out = nullptr;
  auto h = std::make_unique<dex_segmenter>();
  dex_status st = guarded(h.get(), [&] {
    dex::SegmenterOptions opt;
    std::string d = device ? device : "cpu", p = precision ? precision : "fp32";
    DEX_INPUT_CHECK(d == "cpu" || d == "cuda", "unknown device '", d, "' (cpu or cuda)");
    DEX_INPUT_CHECK(p == "fp32" || p == "fp16", "unknown precision '", p, "' (fp32 or fp16)");
    opt.device = d == "cuda" ? dex::Device::CUDA : dex::Device::CPU;
    opt.precision = p == "fp16" ? dex::Precision::FP16 : dex::Precision::FP32;
    h->seg = std::make_unique<dex::Segmenter>(model_path, opt);
  });
  if (st != DEX_OK) {
    copy_message(h->error, err, err_len);
    return st;
  }
  *out = h.release();
  return DEX_OK;
}

void dex_segmenter_destroy(dex_segmenter* s) { delete s; }

dex_status dex_segmenter_set_image(dex_segmenter* s, const float* voxels, const int64_t shape[3],
                                   const double affine[16]) {
  if (!s) return DEX_ERR_ARGUMENT;
  if (!voxels || !shape || !affine) {
    s->error = "dex_segmenter_set_image: voxels, shape and affine must not be NULL";
    return DEX_ERR_ARGUMENT;
  }
  return guarded(s, [&] {
    dex::Volume v;
    for (int a = 0; a < 3; ++a) {
      DEX_INPUT_CHECK(shape[a] > 0 && shape[a] < (1 << 16), "image shape[", a, "] = ", shape[a], " is not valid");
      v.shape[a] = shape[a];
    }
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) v.affine[r][c] = affine[r * 4 + c];
    v.data.assign(voxels, voxels + v.size());
    s->seg->set_image(v);
    s->shape = v.shape;
  });
}

dex_status dex_segmenter_set_image_file(dex_segmenter* s, const char* path) {
  if (!s) return DEX_ERR_ARGUMENT;
  if (!path) {
    s->error = "dex_segmenter_set_image_file: path must not be NULL";
    return DEX_ERR_ARGUMENT;
  }
  return guarded(s, [&] {
    dex::Volume v = dex::read_nifti(path);
    s->seg->set_image(v);
    s->shape = v.shape;
  });
}

dex_status dex_segmenter_segment(dex_segmenter* s, const double* spleen, size_t n_spleen, const double* background,
                                 size_t n_background, uint8_t* mask, size_t mask_len, float* probability,
                                 size_t probability_len) {
  if (!s) return DEX_ERR_ARGUMENT;
  size_t need = size_t(s->shape[0] * s->shape[1] * s->shape[2]);
  if (!mask || (n_spleen && !spleen) || (n_background && !background)) {
    s->error = "dex_segmenter_segment: mask (and click arrays with n > 0) must not be NULL";
    return DEX_ERR_ARGUMENT;
  }
  if (mask_len < need || (probability && probability_len < need)) {
    s->error = dex::str("dex_segmenter_segment: output buffers need ", need, " elements");
    return DEX_ERR_ARGUMENT;
  }
  return guarded(s, [&] {
    dex::Clicks c;
    c.spleen = to_clicks(spleen, n_spleen);
    c.background = to_clicks(background, n_background);
    dex::Segmentation r = s->seg->segment(c, probability != nullptr);
    std::memcpy(mask, r.mask.data.data(), need);
    if (probability) std::memcpy(probability, r.probability.data.data(), need * sizeof(float));
  });
}

dex_status dex_segmenter_image_shape(const dex_segmenter* s, int64_t shape[3]) {
  if (!s || !shape) return DEX_ERR_ARGUMENT;
  for (int a = 0; a < 3; ++a) shape[a] = s->shape[a];
  return s->shape[0] > 0 ? DEX_OK : DEX_ERR_INPUT;
}

const char* dex_segmenter_error(const dex_segmenter* s) { return s ? s->error.c_str() : "null handle"; }

}  // extern "C"
