#include "data/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data/intensity.h"
#include "data/nifti_io.h"
#include "kernels/common.h"
#include "kernels/rng.h"

namespace dex {

namespace fs = std::filesystem;

namespace {

std::string file_name(const std::string& p) { return fs::path(p).filename().string(); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Sorted *.nii.gz names (not hidden) in `folder`.
std::vector<std::string> glob_nii_gz(const std::string& folder) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const std::string n = e.path().filename().string();
    if (!n.empty() && n[0] != '.' && ends_with(n, ".nii.gz") && !e.is_directory()) out.push_back(n);
  }
  DEX_INPUT_CHECK(!ec, "cannot list folder ", folder, ": ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// dataset.json parsed, or null when the file does not exist.
nlohmann::json read_dataset_json(const std::string& dir) {
  const std::string path = dir + "/dataset.json";
  if (!fs::exists(path)) return nullptr;
  std::ifstream f(path);
  DEX_INPUT_CHECK(f.good(), "cannot read ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(path, " is not valid JSON: ", e.what()));
  }
}

std::string resolve(const std::string& dir, const std::string& rel) {
  if (!rel.empty() && rel[0] == '/') return rel;
  std::string r = rel;
  if (r.rfind("./", 0) == 0) r = r.substr(2);
  return dir + "/" + r;
}

void sort_by_image_name(std::vector<DatasetItem>& items) {
  std::stable_sort(items.begin(), items.end(), [](const DatasetItem& a, const DatasetItem& b) {
    return file_name(a.image) < file_name(b.image);
  });
}

}  // namespace

std::vector<DatasetItem> list_training_items(const std::string& dir) {
  DEX_INPUT_CHECK(fs::is_directory(dir), "dataset folder ", dir, " does not exist or is not a folder");
  std::vector<DatasetItem> items;
  const nlohmann::json js = read_dataset_json(dir);
  if (!js.is_null()) {
    const std::string path = dir + "/dataset.json";
    DEX_INPUT_CHECK(js.is_object() && js.contains("training") && js["training"].is_array(), path,
                    ": no \"training\" list");
    for (size_t i = 0; i < js["training"].size(); ++i) {
      const auto& e = js["training"][i];
      DEX_INPUT_CHECK(e.is_object() && e.contains("image") && e["image"].is_string() && e.contains("label") &&
                          e["label"].is_string(),
                      path, ": training entry ", i, " needs string \"image\" and \"label\" entries");
      DatasetItem it{resolve(dir, e["image"].get<std::string>()), resolve(dir, e["label"].get<std::string>())};
      DEX_INPUT_CHECK(fs::exists(it.image), path, ": training image ", it.image, " does not exist");
      DEX_INPUT_CHECK(fs::exists(it.label), path, ": label ", it.label, " of image ", it.image, " does not exist");
      items.push_back(std::move(it));
    }
  } else {
    const std::string images = dir + "/imagesTr", labels = dir + "/labelsTr";
    DEX_INPUT_CHECK(fs::is_directory(images), "dataset folder ", dir, " has no imagesTr/ (and no dataset.json)");
    for (const auto& n : glob_nii_gz(images)) {
      DatasetItem it{images + "/" + n, labels + "/" + n};
      DEX_INPUT_CHECK(fs::exists(it.label), "missing label ", it.label, " for image ", it.image);
      items.push_back(std::move(it));
    }
  }
  DEX_INPUT_CHECK(!items.empty(), "dataset folder ", dir, " has no training images");
  sort_by_image_name(items);
  return items;
}

std::vector<std::string> list_test_images(const std::string& dir) {
  DEX_INPUT_CHECK(fs::is_directory(dir), "dataset folder ", dir, " does not exist or is not a folder");
  std::vector<std::string> out;
  const nlohmann::json js = read_dataset_json(dir);
  if (!js.is_null() && js.is_object() && js.contains("test")) {
    const std::string path = dir + "/dataset.json";
    DEX_INPUT_CHECK(js["test"].is_array(), path, ": \"test\" is not a list");
    for (const auto& e : js["test"]) {
      // MSD lists plain strings; accept {"image": ...} objects too.
      std::string rel;
      if (e.is_string()) rel = e.get<std::string>();
      else if (e.is_object() && e.contains("image") && e["image"].is_string()) rel = e["image"].get<std::string>();
      else throw InputError(path + ": a \"test\" entry is neither a path nor {\"image\": path}");
      out.push_back(resolve(dir, rel));
      DEX_INPUT_CHECK(fs::exists(out.back()), path, ": test image ", out.back(), " does not exist");
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const std::string& a, const std::string& b) { return file_name(a) < file_name(b); });
    return out;
  }
  const std::string images = dir + "/imagesTs";
  if (!fs::is_directory(images)) return out;
  for (const auto& n : glob_nii_gz(images)) out.push_back(images + "/" + n);
  return out;
}

std::map<int, std::string> read_dataset_labels(const std::string& dir) {
  std::map<int, std::string> out;
  const nlohmann::json js = read_dataset_json(dir);
  if (js.is_null() || !js.is_object() || !js.contains("labels")) return out;
  const std::string path = dir + "/dataset.json";
  DEX_INPUT_CHECK(js["labels"].is_object(), path, ": \"labels\" is not an object of value -> name");
  for (const auto& [k, v] : js["labels"].items()) {
    char* end = nullptr;
    const long value = std::strtol(k.c_str(), &end, 10);
    DEX_INPUT_CHECK(!k.empty() && *end == '\0' && value >= 0 && value <= 255 && v.is_string(), path,
                    ": label entry \"", k, "\" must map an integer 0..255 to a name");
    out[static_cast<int>(value)] = v.get<std::string>();
  }
  return out;
}

LabelMapping make_label_mapping(const LabelNames& names, const std::map<int, std::string>& dataset_labels) {
  LabelMapping m;  // lut all zero: everything not named -> background
  for (size_t pos = 0; pos < names.size(); ++pos) {
    const auto& n = names[pos];
    if (n.is_background()) {
      m.normalized.push_back({n.name, 0});
      continue;
    }
    const int new_value = static_cast<int>(pos + 1);
    int file_value = n.value;
    for (const auto& [v, name] : dataset_labels)
      if (lower(name) == lower(n.name)) file_value = v;
    DEX_INPUT_CHECK(file_value >= 0 && file_value <= 255 && new_value <= 255, "label '", n.name, "' value ",
                    file_value, " is outside 0..255");
    m.lut[file_value] = static_cast<uint8_t>(new_value);
    m.normalized.push_back({n.name, new_value});
  }
  return m;
}

void apply_label_mapping(const LabelMapping& m, LabelVolume& label) {
  for (auto& v : label.data) v = m.lut[v];
}

DatasetSplit split_train_val(const std::vector<DatasetItem>& items, int64_t num_val) {
  DEX_INPUT_CHECK(num_val >= 0, "validation count must be >= 0, got ", num_val);
  DEX_INPUT_CHECK(static_cast<int64_t>(items.size()) > num_val, "the dataset has ", items.size(),
                  " cases: too few to hold out ", num_val, " for validation and still train on at least one");
  DatasetSplit s;
  const size_t ntrain = items.size() - static_cast<size_t>(num_val);
  s.train.assign(items.begin(), items.begin() + ntrain);
  s.val.assign(items.begin() + ntrain, items.end());
  return s;
}

PreparedCase prepare_case(const DatasetItem& item, const LabelMapping& mapping, const CaseOptions& opt) {
  PreparedCase c;
  c.item = item;
  Volume image = read_nifti(item.image);
  c.file_shape = image.shape;
  c.image = reorient(image, ras_orientation(image.affine));
  window_intensity_inplace(c.image, opt.a_min, opt.a_max, opt.b_min, opt.b_max);
  if (!item.label.empty()) {
    LabelVolume label = read_nifti_labels(item.label);
    DEX_INPUT_CHECK(label.shape == image.shape, "label ", item.label, " has shape ", label.shape[0], "x",
                    label.shape[1], "x", label.shape[2], " but its image ", item.image, " has ", image.shape[0], "x",
                    image.shape[1], "x", image.shape[2]);
    apply_label_mapping(mapping, label);
    c.label = reorient(label, ras_orientation(label.affine));
    DEX_INPUT_CHECK(c.label.shape == c.image.shape, "label ", item.label, " and image ", item.image,
                    " have different orientations (their RAS shapes differ)");
  }
  return c;
}

CaseCache::CaseCache(std::vector<DatasetItem> items, LabelMapping mapping, double cache_rate, int num_workers,
                     CaseOptions opt)
    : m_items(std::move(items)), m_mapping(std::move(mapping)), m_opt(opt) {
  DEX_INPUT_CHECK(cache_rate >= 0 && cache_rate <= 1, "cache_rate must be in [0, 1], got ", cache_rate);
  m_cache_num = std::min(m_items.size(), static_cast<size_t>(static_cast<double>(m_items.size()) * cache_rate));
  m_cache.resize(m_cache_num);
  std::atomic<size_t> next{0};
  std::mutex err_mutex;
  std::string first_error;
  auto worker = [&]() {
    for (size_t i; (i = next++) < m_cache_num;) {
      try {
        m_cache[i] = std::make_shared<const PreparedCase>(prepare_case(m_items[i], m_mapping, m_opt));
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(err_mutex);
        if (first_error.empty()) first_error = e.what();
      }
    }
  };
  const int nw = std::max(1, std::min<int>(num_workers, static_cast<int>(m_cache_num)));
  std::vector<std::thread> threads;
  for (int t = 1; t < nw; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (!first_error.empty()) throw InputError(first_error);
}

std::shared_ptr<const PreparedCase> CaseCache::get(size_t i) const {
  DEX_CHECK(i < m_items.size(), "CaseCache::get: index ", i, " of ", m_items.size());
  if (i < m_cache_num) return m_cache[i];
  return std::make_shared<const PreparedCase>(prepare_case(m_items[i], m_mapping, m_opt));
}

size_t CaseCache::cached_bytes() const {
  size_t b = 0;
  for (const auto& c : m_cache) b += c->bytes();
  return b;
}

std::vector<int64_t> sampler_indices(int64_t n, uint64_t seed, int64_t epoch, int rank, int world_size, bool shuffle,
                                     bool even_divisible) {
  DEX_CHECK(n >= 0, "sampler_indices: negative dataset size ", n);
  DEX_INPUT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "sampler: rank ", rank,
                  " is not in [0, world_size ", world_size, ")");
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle) {  // Fisher-Yates, one stream per epoch
    Rng rng(seed, rng_stream(RngStream::DataOrder, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
  }
  if (even_divisible && n > 0) {
    const int64_t total = (n + world_size - 1) / world_size * world_size;
    for (int64_t i = n; i < total; ++i) order.push_back(order[(i - n) % n]);
  }
  std::vector<int64_t> out;
  for (size_t p = static_cast<size_t>(rank); p < order.size(); p += static_cast<size_t>(world_size))
    out.push_back(order[p]);
  return out;
}

}  // namespace dex
