// dex model-file metadata: what save_model writes reads back unchanged, and values that are out of range, or that a
// plain get<int> would truncate (2^32 + 8 -> 8), are InputErrors naming the key, never silently different numbers.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "layers/model_file.h"

namespace dex {
namespace {

TEST(ModelFile, MetadataRoundTrips) {
  ModelInfo info;
  info.arch.filters = {8, 16, 32, 64};
  info.arch.strides = {{1, 1, 1}, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}};
  info.arch.kernel_sizes = {{3, 3, 3}, {3, 3, 3}, {3, 3, 3}, {3, 3, 3}};
  info.arch.upsample_kernel_sizes = {{2, 2, 2}, {2, 2, 2}, {2, 2, 2}};
  info.spatial_size = {32, 48, 64};
  info.a_min = -100.f;
  info.a_max = 200.f;
  const ModelInfo back = model_info_from_metadata(model_metadata(info), "m.safetensors");
  EXPECT_EQ(back.arch.filters, info.arch.filters);
  EXPECT_EQ(back.arch.strides, info.arch.strides);
  EXPECT_EQ(back.arch.kernel_sizes, info.arch.kernel_sizes);
  EXPECT_EQ(back.arch.upsample_kernel_sizes, info.arch.upsample_kernel_sizes);
  EXPECT_EQ(back.spatial_size, info.spatial_size);
  EXPECT_EQ(back.a_min, info.a_min);
  EXPECT_EQ(back.a_max, info.a_max);
  EXPECT_EQ(back.label_names, info.label_names);
}

TEST(ModelFile, OutOfRangeMetadataIsAnInputErrorNamingTheKey) {
  const auto good = model_metadata(ModelInfo{});
  const std::string arch = good.at("dex_architecture");
  auto with = [&](const std::string& key, const std::string& value) {
    auto md = good;
    md[key] = value;
    return md;
  };
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string a = arch;
    const size_t at = a.find(from);
    EXPECT_NE(at, std::string::npos) << from << " in " << a;
    return a.replace(at, from.size(), to);
  };
  const struct {
    std::map<std::string, std::string> md;
    std::string needle;
  } cases[] = {
      {with("spatial_size", "[4294967424, 128, 128]"), "spatial_size"},
      {with("spatial_size", "[1e30, 128, 128]"), "spatial_size"},
      {with("spatial_size", "[128, 128]"), "spatial_size"},
      {with("spatial_size", "[2048, 128, 128]"), "spatial_size"},
      {with("intensity_window", "[250, -175]"), "intensity_window"},
      {with("intensity_window", "[-175, 1e400]"), "intensity_window"},
      {with("dex_architecture", replace("\"filters\":[32,", "\"filters\":[4294967328,")), "filters"},
      {with("dex_architecture", replace("\"in_channels\":3", "\"in_channels\":4294967299")), "in_channels"},
      {with("dex_architecture", replace("\"kernel_size\":[[3,3,3]", "\"kernel_size\":[[4294967299,3,3]")),
       "kernel_size"},
      {with("dex_architecture", replace("\"strides\":[[1,1,1]", "\"strides\":[0.5")), "strides"},
      {with("label_names", "[1, 2]"), "metadata"},
  };
  for (const auto& c : cases) {
    try {
      model_info_from_metadata(c.md, "m.safetensors");
      ADD_FAILURE() << "no error for " << c.needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dex
