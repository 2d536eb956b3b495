// Datasets in the Medical Segmentation Decathlon layout (Task09_Spleen): listing, label normalisation, the
// train/validation split, a cache of the deterministic preprocessing, and a distributed sampler (spec §7, §11).
//
//   DIR/dataset.json (optional)  DIR/imagesTr/*.nii.gz  DIR/labelsTr/*.nii.gz  DIR/imagesTs/*.nii.gz
//
// Training pairs come from dataset.json "training" when the file exists, else from the imagesTr/labelsTr globs
// matched by file name; either way they are ordered by image file name, as the bundle's sorted globs are.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/click_simulation.h"  // LabelNames
#include "data/orientation.h"
#include "data/volume.h"

namespace dex {

struct DatasetItem {
  std::string image;
  std::string label;  // empty for test images
};

// Pairs of DIR (see above). Errors (InputError, naming the path): DIR or imagesTr missing, no images, an image
// without its label, a dataset.json that is not valid JSON or whose entries lack "image"/"label", listed files
// that do not exist. Hidden files (names starting with '.', e.g. macOS "._spleen_1.nii.gz") are ignored, as
// Python's glob does.
std::vector<DatasetItem> list_training_items(const std::string& dir);
// Test images: dataset.json "test" when present, else sorted imagesTs/*.nii.gz (empty if the folder is missing).
std::vector<std::string> list_test_images(const std::string& dir);
// dataset.json "labels" as file value -> name (e.g. {0: "background", 1: "spleen"}); empty without dataset.json.
std::map<int, std::string> read_dataset_labels(const std::string& dir);

// NormalizeLabelsInDatasetd: the label at 1-based position idx of `names` (background excepted) gets value idx,
// everything else 0. Its value in the file is names[idx-1].value, or, when `dataset_labels` names it
// (case-insensitive), that file value. lut[file value] = normalised value.
struct LabelMapping {
  std::array<uint8_t, 256> lut{};
  LabelNames normalized;  // the names with their new values (bundle: spleen 1, background 0)
};
LabelMapping make_label_mapping(const LabelNames& names, const std::map<int, std::string>& dataset_labels = {});
void apply_label_mapping(const LabelMapping& m, LabelVolume& label);

// Train/validation split: the last `num_val` items (ordered as listed) validate, the rest train. InputError when
// there are not more items than num_val.
struct DatasetSplit {
  std::vector<DatasetItem> train, val;
};
DatasetSplit split_train_val(const std::vector<DatasetItem>& items, int64_t num_val = 9);

// One case after the deterministic preprocessing: read, normalise labels, orient to RAS (each volume by its own
// affine), window the image to [0, 1] (a_min -175, a_max 250). Image and label share the oriented shape.
struct PreparedCase {
  DatasetItem item;
  Volume image;
  LabelVolume label;
  std::array<int64_t, 3> file_shape{0, 0, 0};
  size_t bytes() const { return image.data.size() * sizeof(float) + label.data.size(); }
};
struct CaseOptions {
  float a_min = -175.f, a_max = 250.f, b_min = 0.f, b_max = 1.f;
};
PreparedCase prepare_case(const DatasetItem& item, const LabelMapping& mapping, const CaseOptions& opt = {});

// MONAI CacheDataset: the first floor(n * cache_rate) items are prepared once, at construction (num_workers
// threads); the others are prepared on demand by get(), every time. get() is thread-safe.
class CaseCache {
 public:
  CaseCache(std::vector<DatasetItem> items, LabelMapping mapping, double cache_rate = 1.0, int num_workers = 1,
            CaseOptions opt = {});
  size_t size() const { return m_items.size(); }
  std::shared_ptr<const PreparedCase> get(size_t i) const;
  const DatasetItem& item(size_t i) const { return m_items.at(i); }
  size_t cached_count() const { return m_cache_num; }
  size_t cached_bytes() const;  // voxel bytes held (float32 image + uint8 label per cached case)
  const LabelMapping& mapping() const { return m_mapping; }

 private:
  std::vector<DatasetItem> m_items;
  LabelMapping m_mapping;
  CaseOptions m_opt;
  size_t m_cache_num = 0;
  std::vector<std::shared_ptr<const PreparedCase>> m_cache;
};

// torch/MONAI DistributedSampler: the order is a pure function of (seed, epoch, rank, world_size). With shuffle,
// a permutation of 0..n-1 drawn from dex::Rng(seed, DataOrder stream of epoch) (torch's randperm cannot be matched);
// even_divisible (train): pad to a multiple of world_size by repeating from the start; otherwise (validation)
// no padding, so ranks may get one item fewer. Rank r takes positions r, r + world_size, ...
std::vector<int64_t> sampler_indices(int64_t n, uint64_t seed, int64_t epoch, int rank, int world_size, bool shuffle,
                                     bool even_divisible);

}  // namespace dex
