// safetensors: bitwise round trip, the byte layout the format prescribes, a file written by hand in Python
// (scripts/gen_fixtures_modelfile.py), atomic writes, and every malformed-file case -> InputError.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "kernels/half.h"
#include "layers/safetensors.h"
#include "layers/torch_checkpoint.h"
#include "tests/testing.h"

namespace dex {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string fresh_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("dex_st_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}
// A file with the given header text (padded to 8) and data bytes.
std::string st_file(std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return u64le(header.size()) + header + data;
}

StateDict sample_state_dict() {
  StateDict sd;
  sd["input_block.conv1.conv.weight"] = {{4, 3, 3, 3, 3}, testing::random_vector(4 * 3 * 27, 11)};
  sd["output_block.conv.conv.bias"] = {{2}, {0.25f, -1.5f}};
  sd["scalar"] = {{}, {3.0f}};
  sd["empty"] = {{0, 5}, {}};
  // special bit patterns must survive: -0, denormal, inf, nan payload, max
  std::vector<float> special = {-0.0f, std::numeric_limits<float>::denorm_min(), INFINITY, -INFINITY,
                                bits_f32(0x7fc01234u), std::numeric_limits<float>::max()};
  sd["special"] = {{2, 3}, special};
  return sd;
}

void expect_bitwise_equal(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& kv : a) {
    auto it = b.find(kv.first);
    ASSERT_NE(it, b.end()) << kv.first;
    EXPECT_EQ(kv.second.shape, it->second.shape) << kv.first;
    ASSERT_EQ(kv.second.data.size(), it->second.data.size()) << kv.first;
    if (!kv.second.data.empty()) {
      EXPECT_EQ(0, std::memcmp(kv.second.data.data(), it->second.data.data(), kv.second.data.size() * 4)) << kv.first;
    }
  }
}

TEST(Safetensors, RoundTripIsBitwise) {
  std::string dir = fresh_dir("roundtrip");
  StateDict sd = sample_state_dict();
  std::map<std::string, std::string> md = {{"config", R"({"filters": [32, 64], "labels": {"spleen": 1}})"},
                                           {"dex_version", "0.1.0"}};
  save_safetensors(dir + "/m.safetensors", sd, md);
  std::map<std::string, std::string> md2;
  StateDict back = load_safetensors(dir + "/m.safetensors", &md2);
  expect_bitwise_equal(sd, back);
  EXPECT_EQ(md, md2);
  EXPECT_EQ(json::parse(md2["config"])["filters"][1], 64);
}

TEST(Safetensors, FileLayoutFollowsTheFormat) {
  std::string dir = fresh_dir("layout");
  StateDict sd = sample_state_dict();
  save_safetensors(dir + "/m.safetensors", sd, {{"k", "v"}});
  std::string bytes = read_bytes(dir + "/m.safetensors");
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_LE(8 + n, bytes.size());
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header[0], '{');
  size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_GT(last + 8, header.size());  // at most 7 padding spaces
  json h = json::parse(header);
  EXPECT_EQ(h["__metadata__"], json({{"k", "v"}}));
  uint64_t expect_begin = 0;
  for (const auto& kv : sd) {  // name order, contiguous, F32 little-endian
    const json& e = h.at(kv.first);
    EXPECT_EQ(e["dtype"], "F32");
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), kv.second.shape);
    uint64_t b = e["data_offsets"][0], end = e["data_offsets"][1];
    EXPECT_EQ(b, expect_begin) << kv.first;
    EXPECT_EQ(end - b, kv.second.data.size() * 4) << kv.first;
    if (end > b) {
      EXPECT_EQ(0, std::memcmp(bytes.data() + 8 + n + b, kv.second.data.data(), end - b)) << kv.first;
    }
    expect_begin = end;
  }
  EXPECT_EQ(8 + n + expect_begin, bytes.size());
  EXPECT_EQ(h.size(), sd.size() + 1);
}

TEST(Safetensors, ReadsAFileWrittenByHandInPython) {
  auto expected = testing::load_fixture(testing::test_data("modelfile/expected.fix"));
  std::map<std::string, std::string> md;
  StateDict sd = load_safetensors(testing::test_data("modelfile/handmade.safetensors"), &md);
  const std::string prefix = "handmade.safetensors/";
  EXPECT_EQ(static_cast<double>(sd.size()), expected.at(prefix + "#keys").data[0]);
  for (const auto& kv : sd) {
    const auto& ref = expected.at(prefix + kv.first);  // F32, F16->f32, BF16->f32 are exact conversions
    if (kv.second.shape.empty())  // fixture_io stores a 0-d array as shape [1] (np.ascontiguousarray)
      EXPECT_EQ(ref.shape, std::vector<int64_t>{1}) << kv.first;
    else
      EXPECT_EQ(kv.second.shape, ref.shape) << kv.first;
    std::vector<float> r = ref.f32();
    ASSERT_EQ(kv.second.data.size(), r.size()) << kv.first;
    if (!r.empty()) {
      EXPECT_EQ(0, std::memcmp(kv.second.data.data(), r.data(), r.size() * 4)) << kv.first;
    }
  }
  EXPECT_TRUE(sd.at("scalar").shape.empty());
  EXPECT_EQ(md.at("format"), "pt");
  EXPECT_EQ(json::parse(md.at("config")), json::parse(read_bytes(testing::test_data("modelfile/handmade_config.json"))));
  // load_model_file picks safetensors by content
  std::string dir = fresh_dir("bycontent");
  fs::copy_file(testing::test_data("modelfile/handmade.safetensors"), dir + "/weights.pt");
  std::map<std::string, std::string> md2;
  StateDict again = load_model_file(dir + "/weights.pt", &md2);
  expect_bitwise_equal(sd, again);
  EXPECT_EQ(md, md2);
}

TEST(Safetensors, AtomicWriteReplacesAndLeavesNoTempFiles) {
  std::string dir = fresh_dir("atomic");
  StateDict a = sample_state_dict(), b;
  b["only"] = {{3}, {1.f, 2.f, 3.f}};
  save_safetensors(dir + "/m.safetensors", a);
  save_safetensors(dir + "/m.safetensors", b);
  expect_bitwise_equal(b, load_safetensors(dir + "/m.safetensors"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "m.safetensors");
  }
  EXPECT_EQ(files, 1);
  // an unwritable destination: InputError naming the path, the old file untouched
  EXPECT_THROW(save_safetensors(dir + "/no/such/dir/m.safetensors", a), InputError);
  try {
    save_safetensors(dir + "/no/such/dir/m.safetensors", a);
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir/m.safetensors"), std::string::npos) << e.what();
  }
  expect_bitwise_equal(b, load_safetensors(dir + "/m.safetensors"));
}

TEST(Safetensors, SaveRejectsInconsistentTensors) {
  std::string dir = fresh_dir("badsave");
  StateDict sd;
  sd["w"] = {{2, 3}, {1.f, 2.f}};
  EXPECT_THROW(save_safetensors(dir + "/m.safetensors", sd), InputError);
  sd["w"] = {{-1}, {}};
  EXPECT_THROW(save_safetensors(dir + "/m.safetensors", sd), InputError);
  StateDict md_name;
  md_name["__metadata__"] = {{1}, {1.f}};
  EXPECT_THROW(save_safetensors(dir + "/m.safetensors", md_name), InputError);
  StateDict ok;
  ok["w"] = {{1}, {1.f}};
  EXPECT_THROW(save_safetensors(dir + "/m.safetensors", ok, {{"labels", "\xff\xfe"}}), InputError);  // not UTF-8
  EXPECT_FALSE(fs::exists(dir + "/m.safetensors"));
}

// Each malformed file must give an InputError whose message names the file (and the tensor where one is at fault).
struct BadCase {
  const char* what;
  std::string bytes;
  const char* must_mention;
};

TEST(Safetensors, MalformedFilesGiveInputErrors) {
  std::string dir = fresh_dir("bad");
  std::string f4(16, '\0');  // 4 floats
  std::string t = R"("t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  std::vector<BadCase> cases = {
      {"empty file", "", "too short"},
      {"five bytes", "abcde", "too short"},
      {"header length beyond the file", u64le(1000) + "{}      ", "past the end"},
      {"header length 2^63", u64le(uint64_t{1} << 63) + "{}      ", "past the end"},
      {"bad JSON", st_file(R"({"t": {"dtype": )", ""), "not valid JSON"},
      {"header is an array", st_file("[1, 2]", ""), "not a JSON object"},
      {"unknown dtype", st_file(R"({"t": {"dtype": "F31", "shape": [4], "data_offsets": [0, 16]}})", f4), "'t'"},
      {"unsupported dtype", st_file(R"({"t": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", f4), "I64"},
      {"dtype not a string", st_file(R"({"t": {"dtype": 7, "shape": [4], "data_offsets": [0, 16]}})", f4), "'t'"},
      {"shape/size mismatch", st_file(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})", f4), "'t'"},
      {"negative shape", st_file(R"({"t": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", f4), "'t'"},
      {"huge shape", st_file(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})",
                             f4), "'t'"},
      {"missing data_offsets", st_file(R"({"t": {"dtype": "F32", "shape": [4]}})", f4), "'t'"},
      {"offsets out of range", st_file(R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", f4), "'t'"},
      {"begin after end", st_file(R"({"t": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", f4), "'t'"},
      {"overlap", st_file(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", f4), "overlap"},
      {"gap", st_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", f4), "'b'"},
      {"uncovered trailing data", st_file("{" + t + "}", f4 + "xxxx"), "cover"},
      {"truncated data", st_file("{" + t + "}", f4).substr(0, st_file("{" + t + "}", f4).size() - 6), "'t'"},
      {"metadata not strings", st_file("{" + t + R"(, "__metadata__": {"epoch": 3}})", f4), "epoch"},
      {"metadata not an object", st_file("{" + t + R"(, "__metadata__": "x"})", f4), "__metadata__"},
  };
  for (const auto& c : cases) {
    std::string path = dir + "/bad.safetensors";
    write_bytes(path, c.bytes);
    try {
      load_safetensors(path);
      ADD_FAILURE() << c.what << ": loaded without error";
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << c.what << ": " << msg;
      EXPECT_NE(msg.find(c.must_mention), std::string::npos) << c.what << ": " << msg;
    }
  }
  // the valid twin of the cases above loads
  // load_model_file gives a damaged .safetensors file the safetensors reader's error
  write_bytes(dir + "/damaged.safetensors", u64le(1000) + "{}      ");
  try {
    load_model_file(dir + "/damaged.safetensors");
    ADD_FAILURE() << "damaged file loaded";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("past the end"), std::string::npos) << e.what();
  }
  write_bytes(dir + "/good.safetensors", st_file("{" + t + "}", f4));
  EXPECT_EQ(load_safetensors(dir + "/good.safetensors").at("t").shape, (std::vector<int64_t>{2, 2}));
}

TEST(Safetensors, EveryTruncationAndHeaderCorruptionIsAnInputError) {
  std::string dir = fresh_dir("fuzz");
  StateDict sd;
  sd["a"] = {{2, 2}, {1.f, 2.f, 3.f, 4.f}};
  sd["b"] = {{3}, {5.f, 6.f, 7.f}};
  save_safetensors(dir + "/m.safetensors", sd, {{"x", "y"}});
  std::string good = read_bytes(dir + "/m.safetensors");
  std::string path = dir + "/cut.safetensors";
  for (size_t len = 0; len < good.size(); len += (len < 16 ? 1 : 5)) {
    write_bytes(path, good.substr(0, len));
    EXPECT_THROW(load_safetensors(path), InputError) << "truncated to " << len << " bytes";
  }
  // Random byte replacements in the length + header: either still a valid file or an InputError, never a crash
  // or another exception type.
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(good[i])) << (8 * i);
  int loaded = 0, rejected = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::string bad = good;
    size_t pos = rng_u32(7, rng_stream(RngStream::Test, 2), trial) % (8 + n);
    bad[pos] = static_cast<char>(rng_u32(7, rng_stream(RngStream::Test, 3), trial) & 0xff);
    write_bytes(path, bad);
    try {
      load_safetensors(path);
      ++loaded;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 150);  // most corruptions of a 150-byte header are detected
  std::cout << "[ corrupt  ] header corruptions: " << loaded << " still valid, " << rejected << " rejected\n";
}

}  // namespace
}  // namespace dex
