// MSD datasets: listing (dataset.json or globs, ordered by image file name), label normalisation, the split, the
// cache of the deterministic preprocessing, and the distributed sampler.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "data/dataset.h"
#include "data/intensity.h"
#include "data/nifti_io.h"
#include "data/phantom.h"
#include "tests/testing.h"

namespace dex {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) {
    path = "/tmp/dex_test_dataset_" + tag + "_" + std::to_string(getpid());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

void touch(const std::string& p) {
  fs::create_directories(fs::path(p).parent_path());
  std::ofstream(p) << "x";
}

std::vector<std::string> names_of(const std::vector<DatasetItem>& items, bool label = false) {
  std::vector<std::string> out;
  for (const auto& it : items) out.push_back(fs::path(label ? it.label : it.image).filename().string());
  return out;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Dataset, ListsGlobsByImageFileName) {
  TempDir d("glob");
  for (const char* n : {"spleen_2.nii.gz", "spleen_10.nii.gz", "spleen_1.nii.gz", "._spleen_3.nii.gz"}) {
    touch(d.path + "/imagesTr/" + n);
    touch(d.path + "/labelsTr/" + n);
  }
  touch(d.path + "/imagesTr/notes.txt");
  touch(d.path + "/imagesTs/spleen_20.nii.gz");
  touch(d.path + "/imagesTs/spleen_11.nii.gz");
  const auto items = list_training_items(d.path);
  EXPECT_EQ(names_of(items), (std::vector<std::string>{"spleen_1.nii.gz", "spleen_10.nii.gz", "spleen_2.nii.gz"}));
  EXPECT_EQ(names_of(items, true), names_of(items));
  const auto ts = list_test_images(d.path);
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(fs::path(ts[0]).filename(), "spleen_11.nii.gz");
  // An image without its label: the error names the missing label.
  touch(d.path + "/imagesTr/spleen_7.nii.gz");
  const std::string e = error_of([&] { list_training_items(d.path); });
  EXPECT_NE(e.find("labelsTr/spleen_7.nii.gz"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { list_training_items(d.path + "/nope"); }), "");
}

TEST(Dataset, ListsDatasetJsonOrderedByImageName) {
  TempDir d("json");
  for (const char* n : {"a_3.nii.gz", "a_1.nii.gz", "a_2.nii.gz"}) {
    touch(d.path + "/imagesTr/" + n);
    touch(d.path + "/lab/" + n);
  }
  touch(d.path + "/imagesTs/t_1.nii.gz");
  std::ofstream(d.path + "/dataset.json") << R"({"labels": {"0": "background", "1": "liver", "2": "Spleen"},
    "training": [{"image": "./imagesTr/a_3.nii.gz", "label": "./lab/a_3.nii.gz"},
                 {"image": "./imagesTr/a_1.nii.gz", "label": "./lab/a_1.nii.gz"}],
    "test": ["./imagesTs/t_1.nii.gz"]})";
  const auto items = list_training_items(d.path);  // a_2 is not listed in dataset.json: not used
  EXPECT_EQ(names_of(items), (std::vector<std::string>{"a_1.nii.gz", "a_3.nii.gz"}));
  EXPECT_EQ(items[0].label, d.path + "/lab/a_1.nii.gz");
  EXPECT_EQ(list_test_images(d.path).size(), 1u);
  const auto labels = read_dataset_labels(d.path);
  EXPECT_EQ(labels.at(2), "Spleen");
  // Listed but missing, and broken JSON: errors naming the file.
  std::ofstream(d.path + "/dataset.json") << R"({"training": [{"image": "./imagesTr/a_9.nii.gz", "label": "x"}]})";
  EXPECT_NE(error_of([&] { list_training_items(d.path); }).find("a_9.nii.gz"), std::string::npos);
  std::ofstream(d.path + "/dataset.json") << "{not json";
  EXPECT_NE(error_of([&] { list_training_items(d.path); }).find("dataset.json"), std::string::npos);
}

TEST(Dataset, LabelNormalisationByName) {
  const auto names = bundle_label_names();
  // Without dataset.json: the bundle's value (spleen 1) -> 1, everything else -> 0.
  const auto m0 = make_label_mapping(names);
  EXPECT_EQ(m0.lut[1], 1);
  for (int v : {0, 2, 3, 255}) EXPECT_EQ(m0.lut[v], 0);
  ASSERT_EQ(m0.normalized.size(), 2u);
  EXPECT_EQ(m0.normalized[0].value, 1);
  EXPECT_EQ(m0.normalized[1].value, 0);
  // dataset.json names spleen 2 (case-insensitive): 2 -> 1, liver 1 -> 0.
  const auto m1 = make_label_mapping(names, {{0, "background"}, {1, "liver"}, {2, "Spleen"}});
  EXPECT_EQ(m1.lut[2], 1);
  EXPECT_EQ(m1.lut[1], 0);
  LabelVolume l;
  l.shape = {1, 1, 4};
  l.data = {0, 1, 2, 7};
  apply_label_mapping(m1, l);
  EXPECT_EQ(l.data, (std::vector<uint8_t>{0, 0, 1, 0}));
}

TEST(Dataset, SplitLastNineValidate) {
  std::vector<DatasetItem> items;
  for (int i = 0; i < 41; ++i) items.push_back({"img" + std::to_string(100 + i), "lab"});
  const auto s = split_train_val(items);
  ASSERT_EQ(s.train.size(), 32u);
  ASSERT_EQ(s.val.size(), 9u);
  EXPECT_EQ(s.train.back().image, "img131");
  EXPECT_EQ(s.val.front().image, "img132");
  EXPECT_EQ(s.val.back().image, "img140");
  EXPECT_EQ(split_train_val(items, 3).val.size(), 3u);
  items.resize(9);
  const std::string e = error_of([&] { split_train_val(items); });
  EXPECT_NE(e.find("9 cases"), std::string::npos) << e;
}

TEST(Dataset, SamplerSemantics) {
  // No shuffle: torch's DistributedSampler layout. n = 5, 2 ranks, even: pad [0..4] + [0] -> r0 {0,2,4}, r1 {1,3,0}.
  EXPECT_EQ(sampler_indices(5, 0, 0, 0, 2, false, true), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(sampler_indices(5, 0, 0, 1, 2, false, true), (std::vector<int64_t>{1, 3, 0}));
  EXPECT_EQ(sampler_indices(5, 0, 0, 1, 2, false, false), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(sampler_indices(2, 0, 0, 3, 4, false, true), (std::vector<int64_t>{1}));  // pad by repeating
  EXPECT_TRUE(sampler_indices(2, 0, 0, 3, 4, false, false).empty());
  // Shuffle: each epoch a permutation, a pure function of (seed, epoch); ranks partition it.
  const auto e0 = sampler_indices(32, 123, 0, 0, 1, true, true);
  EXPECT_EQ(e0, sampler_indices(32, 123, 0, 0, 1, true, true));
  EXPECT_NE(e0, sampler_indices(32, 123, 1, 0, 1, true, true));
  EXPECT_NE(e0, sampler_indices(32, 124, 0, 0, 1, true, true));
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 32u);
  const auto r0 = sampler_indices(32, 123, 4, 0, 3, true, true), r1 = sampler_indices(32, 123, 4, 1, 3, true, true),
             r2 = sampler_indices(32, 123, 4, 2, 3, true, true);
  EXPECT_EQ(r0.size(), 11u);
  EXPECT_EQ(r2.size(), 11u);
  std::set<int64_t> all(r0.begin(), r0.end());
  all.insert(r1.begin(), r1.end());
  all.insert(r2.begin(), r2.end());
  EXPECT_EQ(all.size(), 32u);
  const auto full = sampler_indices(32, 123, 4, 0, 1, true, false);
  for (size_t i = 0; i < r1.size() && 3 * i + 1 < full.size(); ++i) EXPECT_EQ(r1[i], full[3 * i + 1]);
  EXPECT_THROW(sampler_indices(5, 0, 0, 2, 2, false, true), InputError);
}

// Phantoms written in the MSD layout (mixed storage orientations): the cache holds the first floor(n * rate)
// cases, each one the RAS-oriented windowed image (bit-equal to windowing the RAS-stored phantom) with its
// normalised label; the others load on demand with the same content.
TEST(Dataset, CacheOfPhantomDataset) {
  TempDir d("cache");
  const uint64_t seed = 77;
  write_phantom_dataset(d.path, 3, seed, PhantomOptions{}, 1);
  const auto items = list_training_items(d.path);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(list_test_images(d.path).size(), 1u);
  const auto mapping = make_label_mapping(bundle_label_names(), read_dataset_labels(d.path));
  CaseCache cache(items, mapping, 0.7, 2);
  EXPECT_EQ(cache.cached_count(), 2u);
  size_t bytes = 0;
  for (size_t i = 0; i < 3; ++i) {
    const auto c = cache.get(i);
    if (i < 2) {
      bytes += c->bytes();
      EXPECT_EQ(cache.get(i).get(), c.get()) << "cached: the same object";
    } else {
      EXPECT_NE(cache.get(i).get(), c.get()) << "uncached: prepared on demand";
    }
    PhantomOptions ras;
    ras.orientation = PhantomOrientation::RAS;
    const Phantom p = make_phantom(seed, static_cast<int64_t>(i), ras);  // spleen_<i+1> is case i
    const Volume w = window_intensity(p.ct);
    ASSERT_EQ(c->image.shape, w.shape) << i;
    EXPECT_EQ(c->image.data, w.data) << i;
    EXPECT_EQ(c->label.data, p.label.data) << i;
    for (int r = 0; r < 3; ++r)
      for (int k = 0; k < 4; ++k) EXPECT_NEAR(c->image.affine[r][k], p.ct.affine[r][k], 1e-4);
  }
  EXPECT_EQ(cache.cached_bytes(), bytes);
  EXPECT_EQ(CaseCache(items, mapping, 0.0).cached_bytes(), 0u);
  EXPECT_THROW(CaseCache(items, mapping, 1.5), InputError);
}

TEST(Dataset, PrepareCaseNormalisesAndChecksShapes) {
  TempDir d("prep");
  Volume img;
  img.shape = {3, 4, 5};
  img.data.assign(60, -175.f);
  img.data[7] = 250.f;
  img.affine[0][0] = -1;  // stored L: axis 0 is flipped to RAS
  LabelVolume lab;
  lab.shape = img.shape;
  lab.affine = img.affine;
  lab.data.assign(60, 0);
  lab.data[7] = 2;
  lab.data[8] = 1;
  write_nifti(d.path + "/img.nii.gz", img, NiftiDType::I16);
  write_nifti(d.path + "/lab.nii.gz", lab);
  const auto m = make_label_mapping(bundle_label_names(), {{1, "liver"}, {2, "spleen"}});
  const auto c = prepare_case({d.path + "/img.nii.gz", d.path + "/lab.nii.gz"}, m);
  // voxel 7 = (0,1,2) moves to (2,1,2) after the flip of axis 0: image 1.0 (window), label 1 (spleen); liver -> 0.
  EXPECT_EQ(c.image.at(2, 1, 2), 1.f);
  EXPECT_EQ(c.image.at(0, 1, 2), 0.f);
  EXPECT_EQ(c.label.at(2, 1, 2), 1);
  EXPECT_EQ(c.label.at(2, 1, 3), 0);
  int64_t ones = 0;
  for (auto v : c.label.data) ones += v;
  EXPECT_EQ(ones, 1);
  // A label of another shape: InputError naming it.
  LabelVolume bad = lab;
  bad.shape = {3, 4, 4};
  bad.data.resize(48);
  write_nifti(d.path + "/bad.nii.gz", bad);
  const std::string e = error_of([&] { prepare_case({d.path + "/img.nii.gz", d.path + "/bad.nii.gz"}, m); });
  EXPECT_NE(e.find("bad.nii.gz"), std::string::npos) << e;
}

}  // namespace dex
