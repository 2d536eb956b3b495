// DynUNet structure: the bundle's parameter count and names/shapes (spec §2.3), kaiming init (spec §2, incl. the
// transposed-conv fan-in quirk), state_dict export/import (layouts, errors naming the tensor, skip_layers
// aliases), no-grad forward == recorded forward, input checks.
#include <cmath>

#include "autograd/tape.h"
#include "layers/dynunet.h"
#include "layers/init.h"
#include "tests/layers/dynunet_testing.h"

using namespace dex;
using namespace dex::testing;

TEST(DynUNet, DefaultConfigHasTheBundlesParameters) {
  DynUNet net;
  EXPECT_EQ(net.num_parameters(), 31001282);
  const ParameterSet& ps = net.parameters();
  EXPECT_EQ(ps.size(), 35);  // 34 conv/convT weights + the output bias
  struct Want { const char* name; std::vector<int64_t> shape; };
  const Want want[] = {
      {"input_block.conv1.conv.weight", {32, 3, 3, 3, 3}},
      {"input_block.conv3.conv.weight", {32, 3, 1, 1, 1}},
      {"downsamples.0.conv1.conv.weight", {64, 32, 3, 3, 3}},
      {"downsamples.3.conv3.conv.weight", {320, 256, 1, 1, 1}},
      {"bottleneck.conv1.conv.weight", {320, 320, 3, 3, 3}},
      {"upsamples.0.transp_conv.conv.weight", {320, 320, 2, 2, 1}},  // the DEEPEST up block
      {"upsamples.0.conv_block.conv1.conv.weight", {320, 640, 3, 3, 3}},
      {"upsamples.4.transp_conv.conv.weight", {64, 32, 2, 2, 2}},
      {"upsamples.4.conv_block.conv2.conv.weight", {32, 32, 3, 3, 3}},
      {"output_block.conv.conv.weight", {2, 32, 1, 1, 1}},
      {"output_block.conv.conv.bias", {2}},
  };
  for (const Want& w : want) {
    int i = ps.index_of(w.name);
    ASSERT_GE(i, 0) << w.name;
    EXPECT_EQ(ps.spec(i).torch_shape, w.shape) << w.name;
  }
  // Block sums of spec §2.3.
  auto block_sum = [&](const std::string& prefix) {
    int64_t n = 0;
    for (const ParamSpec& s : ps.specs())
      if (s.name.rfind(prefix, 0) == 0) n += s.numel;
    return n;
  };
  EXPECT_EQ(block_sum("input_block."), 30336);
  EXPECT_EQ(block_sum("downsamples.3."), 5058560);
  EXPECT_EQ(block_sum("bottleneck."), 5632000);
  EXPECT_EQ(block_sum("upsamples.0."), 8704000);
  EXPECT_EQ(block_sum("upsamples.4."), 99328);
  EXPECT_EQ(block_sum("output_block."), 66);
  // One contiguous buffer each for values and gradients.
  const ParamSpec& last = ps.specs().back();
  EXPECT_EQ(last.offset + last.numel, ps.numel());
  EXPECT_EQ(ps.tensor(0).data, ps.values());
  EXPECT_EQ(ps.tensor(0).grad, ps.grads());
}

TEST(DynUNet, KaimingInitFollowsPytorchFanInRules) {
  DynUNetConfig cfg = tiny_dynunet_config();
  cfg.filters = {16, 32, 64, 128};  // ~1.3M parameters: enough samples per tensor, fast
  DynUNet net(cfg);
  net.init(123);
  const ParameterSet& ps = net.parameters();
  for (int i = 0; i < ps.size(); ++i) {
    const ParamSpec& s = ps.spec(i);
    std::vector<float> v = ps.get_torch(i);
    if (s.kind == ParamKind::Bias) {
      for (float x : v) ASSERT_EQ(x, 0.f) << s.name;
      continue;
    }
    double sum = 0, sq = 0;
    for (float x : v) { sum += x; sq += double(x) * x; }
    const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    const double want = kaiming_std(s);
    // Sampling error of the standard deviation of n normals: want / sqrt(2n); allow 6 of them.
    EXPECT_NEAR(sd / want, 1.0, 6.0 / std::sqrt(2 * n)) << s.name;
    EXPECT_NEAR(mean / want, 0.0, 6.0 / std::sqrt(n)) << s.name;
  }
  // The transposed-conv quirk: fan_in = OUT channels * k (PyTorch's weight.shape[1] for [in][out][k...]).
  // The std check above tells the two rules apart: they differ by sqrt(2) here.
  const ParamSpec& up = ps.spec(ps.index_of("upsamples.2.transp_conv.conv.weight"));  // [32][16][2][2][2]
  EXPECT_EQ(up.torch_shape, (std::vector<int64_t>{32, 16, 2, 2, 2}));
  EXPECT_EQ(torch_fan_in(up), 16 * 8);
  const ParamSpec& c1 = ps.spec(ps.index_of("downsamples.0.conv1.conv.weight"));  // [32][16][3][3][3]
  EXPECT_EQ(torch_fan_in(c1), 16 * 27);
}

TEST(DynUNet, InitIsSeededAndDeterministic) {
  DynUNet a(tiny_dynunet_config()), b(tiny_dynunet_config()), c(tiny_dynunet_config());
  a.init(5);
  b.init(5);
  c.init(6);
  EXPECT_EQ(0, std::memcmp(a.parameters().values(), b.parameters().values(), a.parameters().bytes()));
  EXPECT_NE(0, std::memcmp(a.parameters().values(), c.parameters().values(), a.parameters().bytes()));
}

TEST(DynUNet, StateDictTransposesLayoutsAndRoundTrips) {
  DynUNet net(tiny_dynunet_config());
  ParameterSet& ps = net.parameters();
  // Conv: PyTorch [K][C][taps] <-> dex [K][taps][C].
  int ic = ps.index_of("downsamples.0.conv1.conv.weight");  // [8][4][3][3][3]
  std::vector<float> v(ps.spec(ic).numel);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  ps.set_torch(ic, v);
  const float* d = ps.tensor(ic).data;
  for (int k : {0, 7})
    for (int c : {0, 3})
      for (int t : {0, 13, 26}) EXPECT_EQ(d[(k * 27 + t) * 4 + c], v[(k * 4 + c) * 27 + t]);
  // Transposed: PyTorch [C][K][taps] <-> dex [K][taps][C].
  int it = ps.index_of("upsamples.0.transp_conv.conv.weight");  // [32][16][2][2][1]
  std::vector<float> u(ps.spec(it).numel);
  for (size_t i = 0; i < u.size(); ++i) u[i] = float(i);
  ps.set_torch(it, u);
  const float* e = ps.tensor(it).data;
  for (int c : {0, 31})
    for (int k : {0, 15})
      for (int t : {0, 3}) EXPECT_EQ(e[(k * 4 + t) * 32 + c], u[(c * 16 + k) * 4 + t]);

  net.init(9);
  StateDict sd = net.state_dict();
  EXPECT_EQ(sd.size(), size_t(ps.size()));
  DynUNet other(tiny_dynunet_config());
  other.load_state_dict(sd);
  EXPECT_EQ(0, std::memcmp(ps.values(), other.parameters().values(), ps.bytes()));
}

static void expect_input_error_naming(DynUNet& net, const StateDict& sd, const std::string& what) {
  try {
    net.load_state_dict(sd);
    ADD_FAILURE() << "no error for " << what;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(DynUNet, LoadStateDictNamesUnknownMissingAndMisshapenTensors) {
  DynUNet net(tiny_dynunet_config());
  net.init(1);
  const StateDict good = net.state_dict();
  StateDict sd = good;
  sd["decoder.extra.weight"] = NamedTensor{{2}, {1.f, 2.f}};
  expect_input_error_naming(net, sd, "decoder.extra.weight");
  sd = good;
  sd.erase("bottleneck.conv2.conv.weight");
  expect_input_error_naming(net, sd, "bottleneck.conv2.conv.weight");
  sd = good;
  sd["output_block.conv.conv.bias"] = NamedTensor{{3}, {0.f, 0.f, 0.f}};
  expect_input_error_naming(net, sd, "output_block.conv.conv.bias");
  sd = good;
  auto& w = sd["upsamples.1.transp_conv.conv.weight"];  // [16][8][2][2][2] given as [8][16][2][2][2]
  std::swap(w.shape[0], w.shape[1]);
  expect_input_error_naming(net, sd, "upsamples.1.transp_conv.conv.weight");
}

TEST(DynUNet, LoadStateDictAcceptsSkipLayersAliases) {
  DynUNet net(tiny_dynunet_config());
  net.init(2);
  StateDict canonical = net.state_dict(), aliased;
  // Tiny net: 2 downsamples, 3 upsamples (spec §2.3 table with the depth of this network).
  const std::vector<std::pair<std::string, std::string>> map = {
      {"input_block.", "skip_layers.downsample."},
      {"downsamples.0.", "skip_layers.next_layer.downsample."},
      {"downsamples.1.", "skip_layers.next_layer.next_layer.downsample."},
      {"bottleneck.", "skip_layers.next_layer.next_layer.next_layer."},
      {"upsamples.0.", "skip_layers.next_layer.next_layer.upsample."},
      {"upsamples.1.", "skip_layers.next_layer.upsample."},
      {"upsamples.2.", "skip_layers.upsample."},
  };
  for (const auto& kv : canonical) {
    std::string name = kv.first;
    for (const auto& m : map)
      if (name.rfind(m.first, 0) == 0) name = m.second + name.substr(m.first.size());
    aliased[name] = kv.second;
  }
  DynUNet other(tiny_dynunet_config());
  other.load_state_dict(aliased);
  EXPECT_EQ(0, std::memcmp(net.parameters().values(), other.parameters().values(), net.parameters().bytes()));
}

TEST(DynUNet, NoGradForwardEqualsRecordedForwardWithLessMemory) {
  DynUNet net(tiny_dynunet_config());
  net.init(3);
  Arena a1, a2;
  Tape t1(a1), t2(a2);
  Tensor x1 = t1.alloc(ndhwc(1, 16, 16, 12, 3), false), x2 = t2.alloc(ndhwc(1, 16, 16, 12, 3), false);
  auto xv = random_vector(x1.numel(), 4);
  std::copy(xv.begin(), xv.end(), x1.data);
  std::copy(xv.begin(), xv.end(), x2.data);
  Tensor y1 = net.forward(t1, x1);
  Tensor y2;
  {
    NoGradGuard ng(t2);
    y2 = net.forward(t2, x2);
  }
  ASSERT_TRUE(y1.same_shape(y2));
  EXPECT_EQ(y1.shape_str(), "[1, 16, 16, 12, 2]");
  EXPECT_EQ(0, std::memcmp(y1.data, y2.data, y1.bytes()));
  EXPECT_EQ(t2.size(), 0u);
  EXPECT_GT(t1.size(), 0u);
  // Activations kept (scratch excluded): in place and without gradient buffers.
  EXPECT_LT(a2.used() * 3, a1.used()) << "no-grad " << a2.used() << " bytes vs recorded " << a1.used();
}

TEST(DynUNet, RejectsBadInputsAndConfigs) {
  DynUNet net(tiny_dynunet_config());
  Arena arena;
  Tape tape(arena);
  Tensor wrong_c = tape.alloc(ndhwc(1, 16, 16, 12, 2), false);
  EXPECT_THROW(net.forward(tape, wrong_c), InputError);
  Tensor wrong_size = tape.alloc(ndhwc(1, 16, 12, 12, 3), false);  // H=12 not a multiple of 8
  try {
    net.forward(tape, wrong_size);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of the total stride 8x8x4"), std::string::npos) << e.what();
  }
  DynUNetConfig bad = tiny_dynunet_config();
  bad.filters.pop_back();
  EXPECT_THROW(DynUNet{bad}, InputError);
  bad = tiny_dynunet_config();
  bad.upsample_kernel_sizes[2] = {2, 2, 2};  // must invert strides[3] = (2,2,1)
  EXPECT_THROW(DynUNet{bad}, InputError);
}
