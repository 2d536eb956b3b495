// torch.save checkpoints read without Python: files made by scripts/gen_fixtures_modelfile.py (real torch.save
// output: plain, {"model": ...}, {"state_dict": ...}, fp16, views, deflate, zip64), MONAI's skip_layers alias
// canonicalisation, and hand-built zips/pickles for every failure path -> InputError, never a crash.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "layers/state_dict.h"
#include "layers/safetensors.h"
#include "layers/torch_checkpoint.h"
#include "tests/testing.h"

namespace dex {
namespace {

namespace fs = std::filesystem;
using testing::test_data;

const std::map<std::string, testing::FixtureTensor>& expected() {
  static const auto fx = testing::load_fixture(test_data("modelfile/expected.fix"));
  return fx;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

std::string fresh_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("dex_tc_" + name);
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

// Every tensor of `sd` whose name is in the fixture under "<file>/" must match bitwise (all conversions to fp32
// are exact, and torch did the same ones); the fixture must hold exactly the names of `sd`.
void expect_matches_fixture(const StateDict& sd, const std::string& file) {
  std::set<std::string> fixture_names;
  for (const auto& kv : expected())
    if (kv.first.compare(0, file.size() + 1, file + "/") == 0 && kv.first != file + "/#keys")
      fixture_names.insert(kv.first.substr(file.size() + 1));
  std::set<std::string> names;
  for (const auto& kv : sd) names.insert(kv.first);
  EXPECT_EQ(names, fixture_names) << file;
  for (const auto& kv : sd) {
    auto it = expected().find(file + "/" + kv.first);
    if (it == expected().end()) continue;
    if (kv.second.shape.empty())  // fixture_io stores a 0-d array as shape [1] (np.ascontiguousarray)
      EXPECT_EQ(it->second.shape, std::vector<int64_t>{1}) << file << " " << kv.first;
    else
      EXPECT_EQ(kv.second.shape, it->second.shape) << file << " " << kv.first;
    std::vector<float> r = it->second.f32();
    ASSERT_EQ(kv.second.data.size(), r.size()) << file << " " << kv.first;
    if (!r.empty()) {
      EXPECT_EQ(0, std::memcmp(kv.second.data.data(), r.data(), r.size() * 4)) << file << " " << kv.first;
    }
  }
}

size_t fixture_key_count(const std::string& file) {
  return static_cast<size_t>(expected().at(file + "/#keys").data[0]);
}

// The raw 68-key dict: names as torch wrote them, every alias equal to its canonical tensor; then 68 -> 35.
void check_dynunet_file(const std::string& file) {
  SCOPED_TRACE(file);
  StateDict raw = load_torch_checkpoint(test_data("modelfile/" + file));
  EXPECT_EQ(raw.size(), fixture_key_count(file));
  if (raw.size() == 68) {
    std::vector<std::string> keys = read_lines(test_data("modelfile/dynunet_tiny_keys.txt"));
    std::set<std::string> want(keys.begin(), keys.end()), got;
    for (const auto& kv : raw) got.insert(kv.first);
    EXPECT_EQ(got, want);
  }
  int aliases = 0;
  for (const auto& kv : raw) {
    std::string canon = canonical_dynunet_name(kv.first);
    if (canon == kv.first) continue;
    ++aliases;
    const NamedTensor& c = raw.at(canon);
    EXPECT_EQ(c.shape, kv.second.shape) << kv.first;
    EXPECT_EQ(c.data, kv.second.data) << kv.first;
  }
  EXPECT_EQ(aliases, raw.size() == 68 ? 33 : 0);
  StateDict sd = raw;
  canonicalize_dynunet_names(sd);
  EXPECT_EQ(sd.size(), 35u);
  expect_matches_fixture(sd, file);
  StateDict via_model_file = load_model_file(test_data("modelfile/" + file));
  EXPECT_EQ(via_model_file.size(), 35u);
}

TEST(TorchCheckpoint, PlainStateDictWith68KeysFor35Tensors) { check_dynunet_file("dynunet_tiny.pt"); }
TEST(TorchCheckpoint, MonaiCheckpointSaverModelKey) { check_dynunet_file("dynunet_tiny_model.pt"); }
TEST(TorchCheckpoint, OlderStateDictKey) { check_dynunet_file("dynunet_tiny_sdkey.pt"); }
TEST(TorchCheckpoint, Fp16StateDict) { check_dynunet_file("dynunet_tiny_fp16.pt"); }
TEST(TorchCheckpoint, DeflateCompressedEntries) { check_dynunet_file("deflate.pt"); }
TEST(TorchCheckpoint, Zip64Archive) { check_dynunet_file("zip64.pt"); }

TEST(TorchCheckpoint, ViewsHonourOffsetsAndStrides) {
  StateDict sd = load_torch_checkpoint(test_data("modelfile/strided.pt"));
  EXPECT_EQ(sd.size(), fixture_key_count("strided.pt"));
  expect_matches_fixture(sd, "strided.pt");
  EXPECT_EQ(sd.at("scalar").shape.size(), 0u);
  EXPECT_EQ(sd.at("empty").data.size(), 0u);
}

TEST(TorchCheckpoint, ShallowDynUNetAliasesUseItsOwnDepth) {
  StateDict sd = load_torch_checkpoint(test_data("modelfile/dynunet_shallow.pt"));
  EXPECT_EQ(sd.size(), fixture_key_count("dynunet_shallow.pt"));
  EXPECT_EQ(infer_dynunet_upsamples(sd), 3);
  canonicalize_dynunet_names(sd);
  EXPECT_EQ(sd.size(), 23u);
  expect_matches_fixture(sd, "dynunet_shallow.pt");
}

TEST(StateDictNames, AliasTableOfTheSpec) {
  // spec §2.3, the full network (5 up blocks)
  const std::vector<std::pair<std::string, std::string>> table = {
      {"skip_layers.downsample", "input_block"},
      {"skip_layers.next_layer.downsample", "downsamples.0"},
      {"skip_layers.next_layer.next_layer.downsample", "downsamples.1"},
      {"skip_layers.next_layer.next_layer.next_layer.downsample", "downsamples.2"},
      {"skip_layers.next_layer.next_layer.next_layer.next_layer.downsample", "downsamples.3"},
      {"skip_layers.next_layer.next_layer.next_layer.next_layer.next_layer", "bottleneck"},
      {"skip_layers.next_layer.next_layer.next_layer.next_layer.upsample", "upsamples.0"},
      {"skip_layers.next_layer.next_layer.next_layer.upsample", "upsamples.1"},
      {"skip_layers.next_layer.next_layer.upsample", "upsamples.2"},
      {"skip_layers.next_layer.upsample", "upsamples.3"},
      {"skip_layers.upsample", "upsamples.4"}};
  for (const auto& row : table)
    EXPECT_EQ(canonical_dynunet_name(row.first + ".conv1.conv.weight"), row.second + ".conv1.conv.weight");
  EXPECT_EQ(canonical_dynunet_name("output_block.conv.conv.bias"), "output_block.conv.conv.bias");
  EXPECT_EQ(canonical_dynunet_name("skip_layers.next_layer.upsample.transp_conv.conv.weight", 3),
            "upsamples.1.transp_conv.conv.weight");
  EXPECT_THROW(canonical_dynunet_name("skip_layers.sideways.conv1.conv.weight", 5), InputError);
  EXPECT_THROW(canonical_dynunet_name("skip_layers.next_layer.next_layer.next_layer.upsample.x", 3), InputError);
  EXPECT_THROW(canonical_dynunet_name("skip_layers.downsample."), InputError);
}

TEST(StateDictNames, CanonicalizeDropsEqualDuplicatesAndRejectsConflicts) {
  StateDict sd;
  sd["input_block.conv1.conv.weight"] = {{2}, {1.f, 2.f}};
  sd["skip_layers.downsample.conv1.conv.weight"] = {{2}, {1.f, 2.f}};
  sd["skip_layers.next_layer.downsample.conv1.conv.weight"] = {{1}, {5.f}};  // alias only: renamed
  sd["output_block.conv.conv.bias"] = {{1}, {0.f}};
  StateDict ok = sd;
  canonicalize_dynunet_names(ok);
  ASSERT_EQ(ok.size(), 3u);
  EXPECT_EQ(ok.at("input_block.conv1.conv.weight").data, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(ok.at("downsamples.0.conv1.conv.weight").data, (std::vector<float>{5.f}));
  StateDict idempotent = ok;
  canonicalize_dynunet_names(idempotent);
  EXPECT_EQ(idempotent.size(), 3u);

  StateDict values = sd;
  values["skip_layers.downsample.conv1.conv.weight"].data[1] = 2.5f;
  try {
    canonicalize_dynunet_names(values);
    ADD_FAILURE() << "conflicting alias accepted";
  } catch (const InputError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("skip_layers.downsample.conv1.conv.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("input_block.conv1.conv.weight"), std::string::npos) << m;
  }
  StateDict shapes = sd;
  shapes["skip_layers.downsample.conv1.conv.weight"].shape = {1, 2};
  EXPECT_THROW(canonicalize_dynunet_names(shapes), InputError);
}

// ---- rejected files made by torch -------------------------------------------------------------------------

void expect_input_error(const std::string& path, const std::string& must_mention) {
  try {
    load_torch_checkpoint(path);
    ADD_FAILURE() << path << ": loaded without error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(must_mention), std::string::npos) << e.what();
  }
}

TEST(TorchCheckpoint, RejectsLegacyTorchScriptAndPickledModules) {
  expect_input_error(test_data("modelfile/legacy.pt"), "legacy");
  expect_input_error(test_data("modelfile/torchscript.pt"), "TorchScript");
  expect_input_error(test_data("modelfile/module.pt"), "TinyDynUNet");
  expect_input_error(test_data("modelfile/handmade.safetensors"), "not a torch.save checkpoint");
  expect_input_error(test_data("modelfile/does_not_exist.pt"), "cannot open");
  expect_input_error(test_data("modelfile"), "directory");
  EXPECT_THROW(load_model_file(test_data("modelfile")), InputError);
  EXPECT_THROW(load_safetensors(test_data("modelfile")), InputError);
  EXPECT_THROW(load_model_file(test_data("modelfile/legacy.pt")), InputError);
  try {
    load_model_file(test_data("modelfile/expected.fix"));
    ADD_FAILURE() << "a fixture file loaded as a model";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("neither"), std::string::npos) << e.what();
  }
}

TEST(TorchCheckpoint, TruncationsAndByteFlipsAreInputErrors) {
  std::string good = read_bytes(test_data("modelfile/dynunet_tiny.pt"));
  std::string dir = fresh_dir("corrupt");
  std::string path = dir + "/m.pt";
  for (size_t len : {size_t{0}, size_t{3}, size_t{21}, size_t{100}, good.size() / 2, good.size() - 23,
                     good.size() - 22, good.size() - 1}) {
    write_bytes(path, good.substr(0, len));
    EXPECT_THROW(load_torch_checkpoint(path), InputError) << "truncated to " << len;
  }
  std::string magic = good;
  magic[0] = 'Q';
  write_bytes(path, magic);
  expect_input_error(path, "not a torch.save checkpoint");
  // Single-byte corruptions anywhere: a valid load (padding, timestamps) or an InputError, never a crash.
  int rejected = 0, trials = 150;
  for (int t = 0; t < trials; ++t) {
    std::string bad = good;
    size_t pos = rng_u32(9, rng_stream(RngStream::Test, 4), t) % bad.size();
    bad[pos] = static_cast<char>(bad[pos] ^ (1 + rng_u32(9, rng_stream(RngStream::Test, 5), t) % 255));
    write_bytes(path, bad);
    try {
      load_torch_checkpoint(path);
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, trials / 2);  // storage bytes are CRC-checked, so most flips are caught
  std::cout << "[ corrupt  ] " << rejected << " of " << trials << " byte flips rejected\n";
}

// ---- hand-built archives: a minimal zip writer and pickle pieces --------------------------------------------

std::string le(uint64_t v, int n) {
  std::string s(n, '\0');
  for (int i = 0; i < n; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  for (const auto& e : entries) {
    uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(e.second.data()),
                                               static_cast<uInt>(e.second.size())));
    size_t offset = out.size();
    out += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) + le(e.second.size(), 4) +
           le(e.second.size(), 4) + le(e.first.size(), 2) + le(0, 2) + e.first + e.second;
    cd += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) +
          le(e.second.size(), 4) + le(e.second.size(), 4) + le(e.first.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) +
          le(0, 2) + le(0, 4) + le(offset, 4) + e.first;
  }
  size_t cd_offset = out.size();
  out += cd;
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(entries.size(), 2) + le(entries.size(), 2) + le(cd.size(), 4) +
         le(cd_offset, 4) + le(0, 2);
  return out;
}

namespace pk {
std::string str(const std::string& s) { return "X" + le(s.size(), 4) + s; }
std::string global(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string int32(int32_t v) { return "J" + le(static_cast<uint32_t>(v), 4); }
std::string tuple(const std::vector<int32_t>& v) {
  std::string s = "(";
  for (int32_t x : v) s += int32(x);
  return s + "t";
}
// torch's tensor pickle: _rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())
std::string tensor(const std::string& key, int numel, int offset, const std::vector<int32_t>& size,
                   const std::vector<int32_t>& stride, const std::string& storage_type = "FloatStorage") {
  return global("torch._utils", "_rebuild_tensor_v2") + "((" + str("storage") + global("torch", storage_type) +
         str(key) + str("cpu") + int32(numel) + "tQ" + int32(offset) + tuple(size) + tuple(stride) + "\x89" +
         global("collections", "OrderedDict") + ")RtR";
}
std::string state_dict(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string s = "\x80\x02}(";
  for (const auto& kv : items) s += str(kv.first) + kv.second;
  return s + "u.";
}
}  // namespace pk

std::string floats(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

TEST(TorchCheckpoint, HandBuiltArchiveAndPickle) {
  std::string dir = fresh_dir("handmade");
  std::string path = dir + "/m.pt";
  std::string storage = floats({0.f, 1.f, 2.f, 3.f, 4.f, 5.f});
  // the valid case: a 2x2 view at offset 1 with strides (1, 2): [[1, 3], [2, 4]]
  std::string tensor_ok = pk::tensor("0", 6, 1, {2, 2}, {1, 2});
  auto archive = [&](const std::string& pkl, bool with_storage = true) {
    std::vector<std::pair<std::string, std::string>> e = {{"m/data.pkl", pkl}, {"m/version", "3\n"}};
    if (with_storage) e.push_back({"m/data/0", storage});
    write_bytes(path, make_zip(e));
  };
  archive(pk::state_dict({{"w", tensor_ok}}));
  StateDict sd = load_torch_checkpoint(path);
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd.at("w").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(sd.at("w").data, (std::vector<float>{1.f, 3.f, 2.f, 4.f}));

  struct Case {
    const char* what;
    std::string pkl;
    bool with_storage;
    const char* must_mention;
  };
  std::string deep = "\x80\x02";
  const int depth = 300000;  // a recursive destructor would overflow the stack
  for (int i = 0; i < depth; ++i) deep += "]";
  for (int i = 0; i < depth - 1; ++i) deep += "a";
  deep += ".";
  const std::vector<Case> cases = {
      {"view beyond its storage", pk::state_dict({{"w", pk::tensor("0", 6, 3, {2, 2}, {1, 2})}}), true, "'w'"},
      {"huge stride-0 view", pk::state_dict({{"w", pk::tensor("0", 6, 0, {1 << 20, 1 << 12}, {0, 0})}}), true,
       "implausible"},
      {"storage record missing", pk::state_dict({{"w", tensor_ok}}), false, "data/0"},
      {"storage numel above its record", pk::state_dict({{"w", pk::tensor("0", 7, 0, {2}, {1})}}), true, "'w'"},
      {"unsupported storage type", pk::state_dict({{"w", pk::tensor("0", 3, 0, {3}, {1}, "ComplexFloatStorage")}}), true,
       "ComplexFloatStorage"},
      {"duplicate key", pk::state_dict({{"w", tensor_ok}, {"w", tensor_ok}}), true, "twice"},
      {"entry not a tensor", pk::state_dict({{"w", tensor_ok}, {"epoch", pk::int32(3)}}), true, "epoch"},
      {"unknown global in the state dict",
       pk::state_dict({{"w", tensor_ok}, {"arr", pk::global("numpy", "ndarray") + ")R"}}), true, "numpy.ndarray"},
      {"dict of objects", pk::state_dict({{"arr", pk::global("numpy", "ndarray") + ")R"}}), true, "neither"},
      {"unsupported opcode", "\x80\x02I3\n.", true, "opcode"},
      {"pickle cut inside a GLOBAL", pk::state_dict({{"w", tensor_ok}}).substr(0, 40), true, "GLOBAL"},
      {"pickle cut after an opcode", pk::state_dict({{"w", tensor_ok}}).substr(0, 9), true, "ends early"},
      {"memo get before put", "\x80\x02h\x05.", true, "memo"},
      {"stack underflow", "\x80\x02t.", true, "MARK"},
      {"top level is a list", "\x80\x02].", true, "list"},
      {"dict without a model entry", "\x80\x02}" + pk::str("epoch") + pk::int32(1) + "s.", true, "'epoch'"},
      {"model entry not a dict", "\x80\x02}" + pk::str("model") + pk::int32(1) + "s.", true, "'model'"},
      {"pickle protocol 9", "\x80\x09}.", true, "protocol"},
      {"300k nested lists", deep, true, "list"},
  };
  for (const auto& c : cases) {
    archive(c.pkl, c.with_storage);
    try {
      load_torch_checkpoint(path);
      ADD_FAILURE() << c.what << ": loaded without error";
    } catch (const InputError& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(path), std::string::npos) << c.what << ": " << m;
      EXPECT_NE(m.find(c.must_mention), std::string::npos) << c.what << ": " << m;
    }
  }
  // archive-level faults
  write_bytes(path, make_zip({{"m/version", "3\n"}, {"m/data/0", storage}}));
  expect_input_error(path, "data.pkl");
  std::string zip = make_zip({{"m/data.pkl", pk::state_dict({{"w", tensor_ok}})}, {"m/data/0", storage}});
  zip[zip.size() - 22 + 16] ^= 0x40;  // central directory offset points elsewhere
  write_bytes(path, zip);
  EXPECT_THROW(load_torch_checkpoint(path), InputError);
  write_bytes(path, make_zip({{"m/data.pkl", pk::state_dict({{"w", tensor_ok}})}, {"m/byteorder", "big"},
                              {"m/data/0", storage}}));
  expect_input_error(path, "big-endian");
}

}  // namespace
}  // namespace dex

namespace dex {
namespace {

// Random single-byte changes inside data.pkl, re-zipped with a correct CRC so they reach the unpickler: each
// gives a state dict or an InputError, never a crash or another exception type.
TEST(TorchCheckpoint, MutatedPicklesAreInputErrors) {
  std::string dir = fresh_dir("pklfuzz");
  std::string path = dir + "/m.pt";
  std::string storage = floats({0.f, 1.f, 2.f, 3.f, 4.f, 5.f});
  std::string pkl = pk::state_dict({{"a", pk::tensor("0", 6, 1, {2, 2}, {1, 2})},
                                    {"b", pk::tensor("0", 6, 0, {3}, {2})},
                                    {"c", pk::tensor("0", 6, 0, {2, 3}, {3, 1}, "HalfStorage")}});
  int loaded = 0, rejected = 0;
  for (int t = 0; t < 200; ++t) {
    std::string bad = pkl;
    size_t pos = rng_u32(13, rng_stream(RngStream::Test, 6), t) % bad.size();
    bad[pos] = static_cast<char>(rng_u32(13, rng_stream(RngStream::Test, 7), t) & 0xff);
    write_bytes(path, make_zip({{"m/data.pkl", bad}, {"m/data/0", storage}}));
    try {
      load_torch_checkpoint(path);
      ++loaded;
    } catch (const InputError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);
  std::cout << "[ corrupt  ] pickle mutations: " << loaded << " loaded, " << rejected << " rejected\n";
}

}  // namespace
}  // namespace dex
