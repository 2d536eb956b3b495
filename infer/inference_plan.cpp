// InferencePlan: schedule builder (buffers, liveness, static offsets, weight table) and the CPU executor.
#include "infer/inference_plan.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "kernels/backend.h"
#include "kernels/cpu/conv3d_gemm.h"
#include "kernels/elementwise.h"
#include "kernels/half.h"
#include "infer/plan_conv_fused.h"

namespace dex {

const char* plan_step_kind_name(PlanStepKind k) {
  switch (k) {
    case PlanStepKind::Conv: return "conv";
    case PlanStepKind::ConvTranspose: return "conv_transpose";
    case PlanStepKind::Residual: return "residual";
    case PlanStepKind::Head: return "head";
  }
  return "?";
}

double PlanStep::macs() const {
  switch (kind) {
    case PlanStepKind::Conv: return double(conv.macs()) + (proj_out >= 0 ? double(proj.macs()) : 0.0);
    case PlanStepKind::ConvTranspose: return double(tconv.macs());
    case PlanStepKind::Head: return double(conv.macs());
    case PlanStepKind::Residual: return 0.0;
  }
  return 0.0;
}

double PlanSchedule::macs() const {
  double m = 0;
  for (const PlanStep& s : steps) m += s.macs();
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// The CPU two-source conv (the decoder's conv1 without a concat copy): im2col reads the first source's
// channels then the second's for every tap, i.e. exactly the panel the conv of the concatenated tensor
// builds, then one sgemm per chunk of output voxels, chunked and threaded as kernels/cpu/conv3d.cpp does.
// OpenBLAS's result for a row can depend on how many rows one sgemm call gets, so the bits match the tape's
// only while the chunking rules agree; the tests hold both to a derived tolerance and report bitwise equality.
// ---------------------------------------------------------------------------------------------------------
namespace {

// The chunking rule of kernels/cpu/conv3d.cpp's chunk_rows (its constants are shared through conv3d_gemm.h): the
// same panels, so the same sgemm calls and, in practice, the same bits as the conv of the concatenated tensor.
int64_t two_source_chunk_rows(const Conv3dParams& p) {
  const int64_t row_bytes = p.taps() * p.C * int64_t(sizeof(float));
  const int64_t min_rows = std::min<int64_t>(kConvMinChunkRows, int64_t(kConvMaxChunkBytes) / row_bytes);
  const int64_t rows = std::max<int64_t>({int64_t(1), int64_t(kConvChunkBytes) / row_bytes, min_rows});
  return std::min(rows, p.out_voxels());
}

size_t two_source_workspace_bytes(const Conv3dParams& p) {
  return size_t(std::max(1, omp_get_max_threads())) * size_t(two_source_chunk_rows(p) * p.taps() * p.C) *
         sizeof(float);
}

// CUDA f16 statistics: voxels split into this many contiguous ranges per (sample, channel), one block each, whose
// (count, mean, M2) partials (3 doubles) are combined in order. The workspace holds them after the f32 input staging.
int stats_parts(int64_t S) { return int(std::min<int64_t>(256, (S + 4095) / 4096)); }
size_t f16_partials_offset(const PlanSchedule& s) {
  return align_up(size_t(s.buffers[s.input].voxels) * s.config.in_channels * sizeof(float));
}
// The fused kernels' tile partials of one conv step: its output's, then (aligned) its projection's.
size_t fused_partials_bytes(const PlanStep& st) {
  if (st.kind != PlanStepKind::Conv) return 0;
  const int64_t S = st.conv.out_voxels() / st.conv.N;
  size_t b = st.out_stats >= 0 ? align_up(fused::partial_bytes(st.conv.N, st.conv.K, S)) : 0;
  if (st.proj_out >= 0 && st.proj_stats >= 0) b += align_up(fused::partial_bytes(st.conv.N, st.conv.K, S));
  return b;
}
// Statistics partials of either f16 executor (unfused: per (sample, channel) voxel ranges; fused: per tile).
size_t f16_partials_bytes(const PlanSchedule& s) {
  size_t b = 0;
  for (const PlanStep& st : s.steps) b = std::max(b, fused_partials_bytes(st));
  for (const PlanStep& st : s.steps)
    for (int i = 0; i < st.num_in; ++i)
      if (st.in[i].norm >= 0) {
        const PlanBuffer& buf = s.buffers[st.in[i].buffer];
        const int64_t S = buf.voxels / s.options.batch;
        b = std::max(b, size_t(buf.voxels / S) * buf.channels * size_t(stats_parts(S)) * 3 * sizeof(double));
      }
  return align_up(b);
}

void im2col_two_source(const Conv3dParams& p, const float* a, int Ca, const float* b, int Cb, int64_t m0,
                       int64_t rows, float* col) {
  const int OD = p.OD(), OH = p.OH(), OW = p.OW();
  const int C = Ca + Cb;
  const int64_t row_len = p.taps() * C;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t m = m0 + r;
    const int ow = int(m % OW);
    m /= OW;
    const int oh = int(m % OH);
    m /= OH;
    const int od = int(m % OD);
    const int n = int(m / OD);
    float* o = col + r * row_len;
    for (int kd = 0; kd < p.KD; ++kd) {
      const int id = od * p.stride[0] - p.pad[0] + kd * p.dil[0];
      for (int kh = 0; kh < p.KH; ++kh) {
        const int ih = oh * p.stride[1] - p.pad[1] + kh * p.dil[1];
        for (int kw = 0; kw < p.KW; ++kw, o += C) {
          const int iw = ow * p.stride[2] - p.pad[2] + kw * p.dil[2];
          if (id < 0 || id >= p.D || ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) {
            std::memset(o, 0, sizeof(float) * C);
            continue;
          }
          const int64_t v = ((int64_t(n) * p.D + id) * p.H + ih) * p.W + iw;
          std::memcpy(o, a + v * Ca, sizeof(float) * Ca);
          std::memcpy(o + Ca, b + v * Cb, sizeof(float) * Cb);
        }
      }
    }
  }
}

void conv3d_fprop_two_source_cpu(const Conv3dParams& p, const float* a, int Ca, const float* b, int Cb,
                                 const float* w, float* y, float* ws) {
  DEX_CHECK(Ca + Cb == p.C, "two-source conv: ", Ca, " + ", Cb, " channels for a conv over ", p.C);
  const int64_t M = p.out_voxels(), row_len = p.taps() * p.C;
  const int64_t step = two_source_chunk_rows(p), chunks = (M + step - 1) / step;
  const int threads = int(std::min<int64_t>(std::max(1, omp_get_max_threads()), chunks));
  detail::BlasSingleThread single;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < chunks; ++i) {
    const int64_t m0 = i * step, rows = std::min(step, M - m0);
    float* panel = ws + int64_t(omp_get_thread_num()) * step * row_len;
    im2col_two_source(p, a, Ca, b, Cb, m0, rows, panel);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), p.K, int(row_len), 1.f, panel, int(row_len), w,
                int(row_len), 0.f, y + m0 * p.K, p.K);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Schedule builder
// ---------------------------------------------------------------------------------------------------------
struct Dims {
  int D, H, W;
};

class Builder {
 public:
  Builder(PlanSchedule& s) : m_s(s), m_N(s.options.batch), m_act(s.options.precision) {}

  int buffer(const std::string& name, const Dims& d, int channels, DType dtype) {
    PlanBuffer b;
    b.name = name;
    b.voxels = int64_t(m_N) * d.D * d.H * d.W;
    b.channels = channels;
    b.dtype = dtype;
    b.bytes = size_t(b.voxels) * size_t(channels) * dtype_size(dtype);
    m_s.buffers.push_back(b);
    return int(m_s.buffers.size()) - 1;
  }
  int activation(const std::string& name, const Dims& d, int channels) { return buffer(name, d, channels, m_act); }

  int weight(const std::string& name, int64_t elems, DType dtype) {
    PlanWeight w;
    w.name = name;
    w.elems = elems;
    w.dtype = dtype;
    m_s.weights.push_back(w);
    return int(m_s.weights.size()) - 1;
  }

  int stats(const std::string& name, int channels) {
    const BlockOptions& o = m_s.config.block;
    PlanStats st;
    st.name = name;
    st.channels = channels;
    st.eps = o.norm_eps;
    if (o.norm_affine) {
      st.gamma = weight(name + ".weight", channels, DType::F32);
      st.beta = weight(name + ".bias", channels, DType::F32);
    }
    m_s.stats.push_back(st);
    return int(m_s.stats.size()) - 1;
  }

  Conv3dParams conv_params(const Dims& d, int C, int K, Int3 k, Int3 s) const {
    Conv3dParams p;
    p.N = m_N;
    p.C = C;
    p.K = K;
    p.D = d.D;
    p.H = d.H;
    p.W = d.W;
    p.KD = k[0];
    p.KH = k[1];
    p.KW = k[2];
    const Int3 pad = monai_padding(k, s);
    for (int a = 0; a < 3; ++a) {
      p.stride[a] = s[a];
      p.pad[a] = pad[a];
    }
    p.validate();
    return p;
  }

  void step(PlanStep st) { m_s.steps.push_back(std::move(st)); }

  // MONAI UnetResBlock: conv1 (+ fused 1x1 projection), conv2, residual. Returns the block output buffer.
  int res_block(const std::string& prefix, int x, int Cin, int Cout, Int3 k, Int3 s, Dims& d) {
    PlanStep c1;
    c1.kind = PlanStepKind::Conv;
    c1.name = prefix + ".conv1";
    c1.in[0] = PlanOperand{x, Cin, -1, false};
    c1.conv = conv_params(d, Cin, Cout, k, s);
    const Dims od{c1.conv.OD(), c1.conv.OH(), c1.conv.OW()};
    c1.weight = weight(prefix + ".conv1.conv.weight", c1.conv.weight_elems(), m_act);
    c1.out = activation(prefix + ".conv1", od, Cout);
    c1.out_stats = stats(prefix + ".norm1", Cout);
    const bool project = Cin != Cout || s != Int3{1, 1, 1};
    if (project) {
      c1.proj = conv_params(d, Cin, Cout, {1, 1, 1}, s);
      DEX_CHECK(c1.proj.OD() == od.D && c1.proj.OH() == od.H && c1.proj.OW() == od.W, prefix,
                ": projection and conv1 outputs differ in size");
      c1.proj_weight = weight(prefix + ".conv3.conv.weight", c1.proj.weight_elems(), m_act);
      c1.proj_out = activation(prefix + ".conv3", od, Cout);
      c1.proj_stats = stats(prefix + ".norm3", Cout);
    }
    const PlanStep first = c1;
    step(std::move(c1));

    PlanStep c2;
    c2.kind = PlanStepKind::Conv;
    c2.name = prefix + ".conv2";
    c2.in[0] = PlanOperand{first.out, Cout, first.out_stats, true};
    c2.conv = conv_params(od, Cout, Cout, k, {1, 1, 1});
    c2.weight = weight(prefix + ".conv2.conv.weight", c2.conv.weight_elems(), m_act);
    c2.out = activation(prefix + ".conv2", od, Cout);
    c2.out_stats = stats(prefix + ".norm2", Cout);
    const int h = c2.out, h_stats = c2.out_stats;
    step(std::move(c2));

    PlanStep r;
    r.kind = PlanStepKind::Residual;
    r.name = prefix;
    r.num_in = 2;
    r.in[0] = PlanOperand{h, Cout, h_stats, false};
    r.in[1] = project ? PlanOperand{first.proj_out, Cout, first.proj_stats, false} : PlanOperand{x, Cin, -1, false};
    r.out = h;
    r.lrelu_out = true;
    step(std::move(r));
    d = od;
    return h;
  }

  // MONAI UnetUpBlock: transposed conv, concat-free conv1, conv2. Returns conv2's output as a normed operand.
  PlanOperand up_block(const std::string& prefix, const PlanOperand& x, int Cout, Int3 k, Int3 upk, int skip,
                       Dims& d) {
    PlanStep t;
    t.kind = PlanStepKind::ConvTranspose;
    t.name = prefix + ".transp_conv";
    t.in[0] = x;
    ConvTranspose3dParams& tp = t.tconv;
    tp.N = m_N;
    tp.C = x.channels;
    tp.K = Cout;
    tp.D = d.D;
    tp.H = d.H;
    tp.W = d.W;
    tp.KD = upk[0];
    tp.KH = upk[1];
    tp.KW = upk[2];
    const Int3 pad = monai_padding(upk, upk);
    for (int a = 0; a < 3; ++a) {
      tp.stride[a] = upk[a];
      tp.pad[a] = pad[a];
    }
    tp.validate();
    const Dims ud{tp.OD(), tp.OH(), tp.OW()};
    t.weight = weight(prefix + ".transp_conv.conv.weight", tp.weight_elems(), m_act);
    t.out = activation(prefix + ".transp_conv", ud, Cout);
    const int u = t.out;
    step(std::move(t));

    const PlanBuffer& sb = m_s.buffers[skip];
    DEX_CHECK(sb.voxels == int64_t(m_N) * ud.D * ud.H * ud.W, prefix, ": upsampled ", ud.D, "x", ud.H, "x", ud.W,
              " does not match the skip ", sb.name);
    PlanStep c1;
    c1.kind = PlanStepKind::Conv;
    c1.name = prefix + ".conv_block.conv1";
    c1.num_in = 2;
    c1.in[0] = PlanOperand{u, Cout, -1, false};
    c1.in[1] = PlanOperand{skip, sb.channels, -1, false};
    c1.conv = conv_params(ud, Cout + sb.channels, Cout, k, {1, 1, 1});
    c1.weight = weight(prefix + ".conv_block.conv1.conv.weight", c1.conv.weight_elems(), m_act);
    c1.out = activation(prefix + ".conv_block.conv1", ud, Cout);
    c1.out_stats = stats(prefix + ".conv_block.norm1", Cout);
    const PlanOperand h1{c1.out, Cout, c1.out_stats, true};
    step(std::move(c1));

    PlanStep c2;
    c2.kind = PlanStepKind::Conv;
    c2.name = prefix + ".conv_block.conv2";
    c2.in[0] = h1;
    c2.conv = conv_params(ud, Cout, Cout, k, {1, 1, 1});
    c2.weight = weight(prefix + ".conv_block.conv2.conv.weight", c2.conv.weight_elems(), m_act);
    c2.out = activation(prefix + ".conv_block.conv2", ud, Cout);
    c2.out_stats = stats(prefix + ".conv_block.norm2", Cout);
    const PlanOperand h2{c2.out, Cout, c2.out_stats, true};
    step(std::move(c2));
    d = ud;
    return h2;
  }

 private:
  PlanSchedule& m_s;
  int m_N;
  DType m_act;
};

// Buffers touched by a step: (id, writes).
std::vector<std::pair<int, bool>> touched(const PlanStep& s) {
  std::vector<std::pair<int, bool>> t;
  for (int i = 0; i < s.num_in; ++i) t.emplace_back(s.in[i].buffer, false);
  for (int b : {s.out, s.proj_out, s.probs, s.mask})
    if (b >= 0) t.emplace_back(b, true);
  return t;
}

void assign_lifetimes(PlanSchedule& s) {
  const int n = int(s.steps.size());
  for (PlanBuffer& b : s.buffers) {
    b.first = std::numeric_limits<int>::max();
    b.last = -1;
  }
  // Per buffer, the reads of each value it holds (a write starts a new value; a step reads before it writes).
  std::vector<std::vector<std::pair<int, int>>> reads(s.buffers.size());  // (normed reads, plain reads) per value
  for (auto& r : reads) r.emplace_back(0, 0);
  for (int t = 0; t < n; ++t) {
    const PlanStep& st = s.steps[t];
    for (int i = 0; i < st.num_in; ++i) {
      auto& v = reads[st.in[i].buffer].back();
      (st.in[i].norm >= 0 ? v.first : v.second)++;
    }
    for (auto [id, writes] : touched(st)) {
      PlanBuffer& b = s.buffers[id];
      if (writes) {
        b.first = std::min(b.first, t);
        reads[id].emplace_back(0, 0);
      }
      b.last = std::max(b.last, t);
    }
  }
  s.buffers[s.input].first = 0;
  if (s.options.keep_input) s.buffers[s.input].last = n;
  for (int out : {s.logits, s.probs, s.mask}) s.buffers[out].last = n;  // results stay readable after run()
  for (size_t i = 0; i < s.buffers.size(); ++i) {
    const PlanBuffer& b = s.buffers[i];
    DEX_CHECK(b.first <= b.last, "plan: buffer ", b.name, " is never written or read");
    // A raw value normalised in its consumer's prologue has that one consumer (the CPU executor normalises it
    // in place; a fused kernel reads it raw once).
    for (const auto& v : reads[i])
      DEX_CHECK(v.first == 0 || (v.first == 1 && v.second == 0), "plan: a value of buffer ", b.name,
                " is read normalised by ", v.first, " steps and as stored by ", v.second);
  }
}

// First fit in order of decreasing size: each buffer takes the lowest offset that no buffer with an
// overlapping lifetime (inclusive at both ends) already holds.
void assign_offsets(PlanSchedule& s) {
  std::vector<int> order(s.buffers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return s.buffers[a].bytes > s.buffers[b].bytes; });
  std::vector<int> placed;
  size_t peak = 0;
  for (int id : order) {
    PlanBuffer& b = s.buffers[id];
    std::vector<std::pair<size_t, size_t>> busy;  // [begin, end) of live neighbours
    for (int o : placed) {
      const PlanBuffer& q = s.buffers[o];
      if (q.first <= b.last && b.first <= q.last) busy.emplace_back(q.offset, q.offset + align_up(q.bytes));
    }
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& r : busy) {
      if (off + align_up(b.bytes) <= r.first) break;
      off = std::max(off, r.second);
    }
    b.offset = off;
    peak = std::max(peak, off + align_up(b.bytes));
    placed.push_back(id);
  }
  s.memory.activations = peak;
  s.memory.activations_no_reuse = 0;
  for (const PlanBuffer& b : s.buffers) s.memory.activations_no_reuse += align_up(b.bytes);
  s.memory.activations_lower_bound = 0;
  for (int t = 0; t <= int(s.steps.size()); ++t) {
    size_t live = 0;
    for (const PlanBuffer& b : s.buffers)
      if (b.first <= t && t <= b.last) live += align_up(b.bytes);
    s.memory.activations_lower_bound = std::max(s.memory.activations_lower_bound, live);
  }
}

std::string mib(size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", double(bytes) / double(1 << 20));
  return b;
}

}  // namespace

PlanSchedule build_plan_schedule(const DynUNetConfig& config, Int3 spatial, const PlanOptions& options) {
  config.validate();
  DEX_INPUT_CHECK(options.batch >= 1, "inference plan: batch must be >= 1, got ", options.batch);
  DEX_INPUT_CHECK(options.precision == DType::F32 || options.precision == DType::F16,
                  "inference plan: precision must be f32 or f16, got ", dtype_name(options.precision));
  const Int3 ts = config.total_stride();
  for (int a = 0; a < 3; ++a)
    DEX_INPUT_CHECK(spatial[a] > 0 && spatial[a] % ts[a] == 0, "inference plan: spatial size ", spatial[0], "x",
                    spatial[1], "x", spatial[2], " must be a (positive) multiple of the total stride ", ts[0], "x",
                    ts[1], "x", ts[2]);
  PlanSchedule s;
  s.config = config;
  s.options = options;
  s.spatial = spatial;
  Builder b(s);
  const auto& f = config.filters;
  const auto& k = config.kernel_sizes;
  const auto& st = config.strides;
  const int L = config.levels();
  Dims d{spatial[0], spatial[1], spatial[2]};
  s.input = b.activation("input", d, config.in_channels);

  std::vector<int> skips;
  std::vector<Dims> skip_dims;
  int h = b.res_block("input_block", s.input, config.in_channels, f[0], k[0], st[0], d);
  skips.push_back(h);
  for (int i = 0; i < L - 2; ++i) {
    h = b.res_block("downsamples." + std::to_string(i), h, f[i], f[i + 1], k[i + 1], st[i + 1], d);
    skips.push_back(h);
  }
  h = b.res_block("bottleneck", h, f[L - 2], f[L - 1], k[L - 1], st[L - 1], d);
  PlanOperand x{h, f[L - 1], -1, false};
  for (int j = 0; j < L - 1; ++j)
    x = b.up_block("upsamples." + std::to_string(j), x, f[L - 2 - j], k[L - 1 - j],
                   config.upsample_kernel_sizes[L - 2 - j], skips[skips.size() - 1 - j], d);

  PlanStep head;
  head.kind = PlanStepKind::Head;
  head.name = "output_block";
  head.in[0] = x;
  head.conv = b.conv_params(d, f[0], config.out_channels, {1, 1, 1}, {1, 1, 1});
  head.weight = b.weight("output_block.conv.conv.weight", head.conv.weight_elems(), DType::F32);
  head.bias = b.weight("output_block.conv.conv.bias", config.out_channels, DType::F32);
  head.out = s.logits = b.buffer("logits", d, config.out_channels, DType::F32);
  head.probs = s.probs = b.buffer("probabilities", d, config.out_channels, DType::F32);
  head.mask = s.mask = b.buffer("mask", d, 1, DType::U8);
  b.step(std::move(head));

  assign_lifetimes(s);
  assign_offsets(s);
  size_t woff = 0;
  for (PlanWeight& w : s.weights) {
    w.offset = woff;
    woff += align_up(size_t(w.elems) * dtype_size(w.dtype));
  }
  s.memory.weights = woff;
  s.memory.stats = 0;
  for (const PlanStats& ps : s.stats) s.memory.stats += 2 * align_up(size_t(options.batch) * ps.channels * 4);
  s.memory.workspace = 0;
  if (options.precision == DType::F16)  // the f32 input staging the executor converts from + stats partials
    s.memory.workspace = f16_partials_offset(s) + f16_partials_bytes(s);
  if (options.device == Device::CPU)
    for (const PlanStep& p : s.steps) {
      if (p.kind == PlanStepKind::Conv && p.num_in == 2)
        s.memory.workspace = std::max(s.memory.workspace, two_source_workspace_bytes(p.conv));
      else if (p.kind == PlanStepKind::Conv || p.kind == PlanStepKind::Head)
        s.memory.workspace = std::max(s.memory.workspace, conv3d_cpu_workspace_bytes(p.conv));
      if (p.proj_out >= 0) s.memory.workspace = std::max(s.memory.workspace, conv3d_cpu_workspace_bytes(p.proj));
    }
  return s;
}

std::string PlanSchedule::describe() const {
  std::ostringstream os;
  os.precision(2);
  os << "inference plan: " << options.batch << "x" << spatial[0] << "x" << spatial[1] << "x" << spatial[2] << ", "
     << dtype_name(options.precision) << ", " << device_name(options.device) << ", " << steps.size() << " steps, "
     << std::fixed << macs() / 1e9 << " GMAC\n";
  auto operand = [&](const PlanOperand& o) {
    std::string t = str("b", o.buffer, "[", o.channels, "]");
    if (o.norm >= 0) t += str(" <norm:", stats[o.norm].name, o.lrelu ? "+lrelu" : "", ">");
    return t;
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const PlanStep& s = steps[i];
    os << "  " << i << " " << plan_step_kind_name(s.kind) << " " << s.name << ": ";
    for (int j = 0; j < s.num_in; ++j) os << (j ? " + " : "") << operand(s.in[j]);
    os << " -> b" << s.out;
    if (s.kind == PlanStepKind::Residual) os << " (in place" << (s.lrelu_out ? ", lrelu" : "") << ")";
    if (s.out_stats >= 0) os << " {stats:" << stats[s.out_stats].name << "}";
    if (s.proj_out >= 0) os << "; fused 1x1 projection -> b" << s.proj_out << " {stats:" << stats[s.proj_stats].name << "}";
    if (s.kind == PlanStepKind::Head) os << " (logits), softmax -> b" << s.probs << ", argmax -> b" << s.mask;
    if (s.kind == PlanStepKind::Conv && s.num_in == 2) os << " (concat-free)";
    os << "\n";
  }
  os << "buffers (offset, size, steps live):\n";
  for (size_t i = 0; i < buffers.size(); ++i) {
    const PlanBuffer& b = buffers[i];
    os << "  b" << i << " " << b.name << " [" << b.voxels << "x" << b.channels << " " << dtype_name(b.dtype)
       << "] @" << mib(b.offset) << " " << mib(b.bytes) << " steps " << b.first << ".." << b.last << "\n";
  }
  os << "memory: activations " << mib(memory.activations) << " (lower bound " << mib(memory.activations_lower_bound)
     << ", without reuse " << mib(memory.activations_no_reuse) << "), stats " << mib(memory.stats) << ", weights "
     << mib(memory.weights) << ", workspace " << mib(memory.workspace) << ", total " << mib(memory.total()) << "\n";
  return os.str();
}

// ---------------------------------------------------------------------------------------------------------
// InferencePlan: the executor (CPU, or CUDA fp32 where dex_cuda is built: infer/plan_cuda.cu)
// ---------------------------------------------------------------------------------------------------------
#if defined(DEX_HAVE_CUDA)
namespace plan_cuda {  // infer/plan_cuda.cu; streams and graphs as opaque pointers (no CUDA headers here)
void conv3d_fprop_two_source(const Conv3dParams& p, const float* a, int Ca, const float* b, int Cb, const float* w,
                             float* y, void* stream);
void* stream_create();
void stream_destroy(void* stream) noexcept;
bool sync_check();  // DEX_SYNC_CHECK=1: every launch synchronised and checked
void reserve_instance_norm_workspace(const InstanceNormParams& p, void* stream);  // before a capture
void capture_begin(void* stream);
void* capture_end(void* stream);  // instantiated graph
void capture_abort(void* stream) noexcept;
void graph_launch(void* graph, void* stream);
void graph_destroy(void* graph) noexcept;
// f16 plans: fp16 activations and conv weights (void*), fp32 statistics, head weights and logits
void conv3d_fprop_two_source_f16(const Conv3dParams& p, const void* a, int Ca, const void* b, int Cb, const void* w,
                                 void* y, void* stream);
void instance_norm_stats_f16(int N, int C, int64_t S, float eps, const void* x, float* mean, float* rstd, int P,
                             void* partials, void* stream);
void normalise_f16(int N, int C, int64_t S, void* x, const float* mean, const float* rstd, const float* gamma,
                   const float* beta, bool lrelu, float slope, void* stream);
void add_f16(int64_t n, const void* a, const void* b, void* y, bool lrelu, float slope, void* stream);
void head_f16(int64_t voxels, int C, int K, const void* x, const float* w, const float* bias, float* logits,
              void* stream);
void convert_to_f16(int64_t n, const float* src, void* dst, void* stream);
std::vector<double> graph_replay_times_ms(void* graph, void* stream, int warmup, int runs);
void conv3d_fprop_f16(const Conv3dParams& p, const void* x, const void* w, void* y, void* stream);
void conv_transpose3d_fprop_f16(const ConvTranspose3dParams& p, const void* x, const void* w, void* y, void* stream);
}  // namespace plan_cuda
#endif

InferencePlan::InferencePlan(const DynUNet& net, Int3 spatial, const PlanOptions& options)
    : m_schedule(build_plan_schedule(net.config(), spatial, options)) {
#if !defined(DEX_HAVE_CUDA)
  DEX_INPUT_CHECK(options.device == Device::CPU, "inference plan: dex was built without CUDA (device ",
                  device_name(options.device), " asked); build_plan_schedule states a CUDA plan's memory");
#endif
  DEX_INPUT_CHECK(options.precision == DType::F32 || options.device == Device::CUDA,
                  "inference plan: the CPU executor runs f32 (", dtype_name(options.precision),
                  " asked; f16 runs on CUDA, and build_plan_schedule states any plan's memory)");
  m_be = &backend(options.device);  // throws, saying why, when that backend has no device
  const PlanSchedule& s = m_schedule;
  BlockAllocator& mem = *m_be->allocator;
  m_arena = Buffer(mem, std::max<size_t>(s.memory.activations, 1));
  m_stats = Buffer(mem, std::max<size_t>(s.memory.stats, 1));
  m_weights = Buffer(mem, std::max<size_t>(s.memory.weights, 1));
  size_t ws = s.memory.workspace;
  if (options.device != Device::CPU && options.precision == DType::F32)
    for (const PlanStep& p : s.steps)
      if (p.kind == PlanStepKind::Conv || p.kind == PlanStepKind::Head) {
        ws = std::max(ws, m_be->conv3d_workspace_bytes(p.conv));
        if (p.proj_out >= 0) ws = std::max(ws, m_be->conv3d_workspace_bytes(p.proj));
      }
  if (ws) m_workspace = Buffer(mem, ws);  // CUDA f16: the f32 input staging (input() points there)
  size_t off = 0;
  for (const PlanStats& st : s.stats) {
    m_stats_offset.push_back(off / sizeof(float));
    off += 2 * align_up(size_t(s.options.batch) * st.channels * 4);
  }
  // Pack the weights once (internal KTRSC fp32 layout of the ParameterSet) into one buffer on the plan's device.
  const ParameterSet& ps = net.parameters();
  const Backend& src = backend(net.device());
  std::vector<char> packed(s.memory.weights);
  std::vector<float> tmp;
  for (const PlanWeight& w : s.weights) {
    const int i = ps.index_of(w.name);
    DEX_CHECK(i >= 0, "inference plan: the model has no parameter ", w.name);
    const Tensor& t = ps.tensor(i);
    DEX_CHECK(t.numel() == w.elems, "inference plan: ", w.name, " has ", t.numel(), " elements, the plan expects ",
              w.elems);
    tmp.resize(size_t(w.elems));
    src.copy(tmp.data(), Device::CPU, t.data, net.device(), size_t(w.elems) * sizeof(float), nullptr);
    char* dst = packed.data() + w.offset;
    if (w.dtype == DType::F32)
      std::memcpy(dst, tmp.data(), tmp.size() * sizeof(float));
    else
      convert_f32_to_f16_cpu(w.elems, tmp.data(), reinterpret_cast<uint16_t*>(dst));
  }
  m_be->copy(m_weights.data(), options.device, packed.data(), Device::CPU, packed.size(), nullptr);
#if defined(DEX_HAVE_CUDA)
  if (options.device == Device::CUDA) m_stream = plan_cuda::stream_create();
  const char* unfused = std::getenv("DEX_PLAN_UNFUSED");
  m_fused = f16() && options.fused && !(unfused && std::string(unfused) == "1");
#endif
}

InferencePlan::~InferencePlan() {
#if defined(DEX_HAVE_CUDA)
  if (m_graph) plan_cuda::graph_destroy(m_graph);
  if (m_stream) plan_cuda::stream_destroy(m_stream);
#endif
}

void* InferencePlan::vbuf(int id) const { return m_arena.as<char>() + m_schedule.buffers.at(id).offset; }

bool InferencePlan::f16() const { return m_schedule.options.precision == DType::F16; }

float* InferencePlan::fbuf(int id) const {
  const PlanBuffer& b = m_schedule.buffers.at(id);
  DEX_CHECK(b.dtype == DType::F32, "inference plan: buffer ", b.name, " is ", dtype_name(b.dtype), ", not f32");
  return reinterpret_cast<float*>(m_arena.as<char>() + b.offset);
}

const float* InferencePlan::weight(int i) const {
  return reinterpret_cast<const float*>(m_weights.as<char>() + m_schedule.weights.at(i).offset);
}

float* InferencePlan::input() { return f16() ? m_workspace.as<float>() : fbuf(m_schedule.input); }
const float* InferencePlan::logits() const { return fbuf(m_schedule.logits); }
const float* InferencePlan::probabilities() const { return fbuf(m_schedule.probs); }
const uint8_t* InferencePlan::mask() const {
  return reinterpret_cast<const uint8_t*>(m_arena.as<char>() + m_schedule.buffers[m_schedule.mask].offset);
}
int64_t InferencePlan::output_voxels() const { return m_schedule.buffers[m_schedule.mask].voxels; }

std::vector<float> InferencePlan::logits_host() const {
  std::vector<float> v(size_t(output_voxels() * m_schedule.config.out_channels));
  m_be->copy(v.data(), Device::CPU, logits(), m_schedule.options.device, v.size() * sizeof(float), m_stream);
  return v;
}
std::vector<float> InferencePlan::probabilities_host() const {
  std::vector<float> v(size_t(output_voxels() * m_schedule.config.out_channels));
  m_be->copy(v.data(), Device::CPU, probabilities(), m_schedule.options.device, v.size() * sizeof(float), m_stream);
  return v;
}
std::vector<uint8_t> InferencePlan::mask_host() const {
  std::vector<uint8_t> v(static_cast<size_t>(output_voxels()));
  m_be->copy(v.data(), Device::CPU, mask(), m_schedule.options.device, v.size(), m_stream);
  return v;
}

void InferencePlan::poison_arena() {
  std::vector<uint32_t> nan(m_arena.size() / 4, 0x7fc00001u);
  m_be->copy(m_arena.data(), m_schedule.options.device, nan.data(), Device::CPU, nan.size() * 4, m_stream);
}

void InferencePlan::run(const float* x) {
  upload(x);
  run();
}

void InferencePlan::upload(const float* x) {
  const PlanBuffer& in = m_schedule.buffers[m_schedule.input];
  m_be->copy(input(), m_schedule.options.device, x, Device::CPU, size_t(in.voxels) * in.channels * sizeof(float),
             m_stream);  // (CUDA: synchronises, so x may be reused at once)
}

void InferencePlan::capture() {
#if defined(DEX_HAVE_CUDA)
  // The whole forward is captured once as a CUDA graph (buffers never move), then replayed.
  if (m_graph) return;
  // The f32 steps' split instance norm takes its scratch from the stream's grow-only workspace (split_cuda.h),
  // which cannot grow while the stream captures (cudaMalloc: "operation not permitted when stream is capturing",
  // seen on an H100): grow it first. (An uncaptured warm-up pass would also do it, but it overwrites the input
  // buffer, whose memory later buffers share unless keep_input: the graph's first replay then reads garbage.)
  if (!f16())
    for (const PlanStep& s : m_schedule.steps)
      for (int i = 0; i < s.num_in; ++i)
        if (s.in[i].norm >= 0) plan_cuda::reserve_instance_norm_workspace(norm_params(s.in[i]), m_stream);
  plan_cuda::capture_begin(m_stream);
  try {
    run_steps();
  } catch (...) {
    plan_cuda::capture_abort(m_stream);
    throw;
  }
  m_graph = plan_cuda::capture_end(m_stream);
#endif
}

std::vector<double> InferencePlan::replay_times_ms(int warmup, int runs) {
  DEX_INPUT_CHECK(m_schedule.options.device == Device::CUDA, "inference plan: replay_times_ms times CUDA graph "
                  "replays; this plan runs on ", device_name(m_schedule.options.device));
#if defined(DEX_HAVE_CUDA)
  capture();
  return plan_cuda::graph_replay_times_ms(m_graph, m_stream, warmup, runs);
#else
  (void)warmup;
  (void)runs;
  return {};
#endif
}

void InferencePlan::run() {
#if defined(DEX_HAVE_CUDA)
  if (m_schedule.options.device == Device::CUDA) {
    // DEX_PLAN_GRAPH=0 (or DEX_SYNC_CHECK=1, which a capture cannot take) launches the steps one by one instead of
    // replaying the graph: for debugging, and to tell a capture problem from a kernel problem.
    static const bool no_graph = [] {
      const char* e = std::getenv("DEX_PLAN_GRAPH");
      return (e && std::string(e) == "0") || plan_cuda::sync_check();
    }();
    if (no_graph) {
      run_steps();
      m_be->synchronize(m_stream);
      return;
    }
    capture();
    plan_cuda::graph_launch(m_graph, m_stream);
    m_be->synchronize(m_stream);
    return;
  }
#endif
  run_steps();
}

void InferencePlan::run_steps() {
#if defined(DEX_HAVE_CUDA)
  if (f16()) {
    const PlanBuffer& in = m_schedule.buffers[m_schedule.input];
    plan_cuda::convert_to_f16(in.voxels * in.channels, m_workspace.as<float>(), vbuf(m_schedule.input), m_stream);
  }
#endif
  for (const PlanStep& s : m_schedule.steps) {
    switch (s.kind) {
      case PlanStepKind::Conv: run_conv(s); break;
      case PlanStepKind::ConvTranspose: run_conv_transpose(s); break;
      case PlanStepKind::Residual: run_residual(s); break;
      case PlanStepKind::Head: run_head(s); break;
    }
  }
}

float* InferencePlan::stats_mean(int slot) const { return m_stats.as<float>() + m_stats_offset.at(slot); }
float* InferencePlan::stats_rstd(int slot) const {
  const size_t nc = size_t(m_schedule.options.batch) * m_schedule.stats.at(slot).channels;
  return stats_mean(slot) + align_up(nc * 4) / sizeof(float);
}

// A step's operand as the fused kernels read it: raw with its statistics slot (normalised in the prologue), or as
// stored.
plan_fused::Operand InferencePlan::fused_operand(const PlanOperand& op) const {
  plan_fused::Operand o;
  o.x = vbuf(op.buffer);
  o.channels = op.channels;
  if (op.norm >= 0) {
    const PlanStats& st = m_schedule.stats[op.norm];
    o.mean = stats_mean(op.norm);
    o.rstd = stats_rstd(op.norm);
    o.gamma = st.gamma >= 0 ? weight(st.gamma) : nullptr;
    o.beta = st.beta >= 0 ? weight(st.beta) : nullptr;
    o.lrelu = op.lrelu;
  }
  return o;
}

InstanceNormParams InferencePlan::norm_params(const PlanOperand& op) const {
  const PlanStats& st = m_schedule.stats[op.norm];
  const int N = m_schedule.options.batch;
  InstanceNormParams p;
  p.N = N;
  p.C = op.channels;
  p.S = m_schedule.buffers[op.buffer].voxels / N;
  p.eps = st.eps;
  p.affine = st.gamma >= 0;
  return p;
}

void InferencePlan::prologue(const PlanOperand& op) {
  if (op.norm < 0) return;
  const PlanStats& st = m_schedule.stats[op.norm];
  const PlanBuffer& b = m_schedule.buffers[op.buffer];
  const int N = m_schedule.options.batch;
  const InstanceNormParams p = norm_params(op);
  float* mean = m_stats.as<float>() + m_stats_offset[op.norm];
  float* rstd = mean + align_up(size_t(N) * st.channels * 4) / sizeof(float);
#if defined(DEX_HAVE_CUDA)
  if (f16()) {  // statistics (the conv epilogue's job in a fused kernel), then normalise (+ LeakyReLU) in place
    plan_cuda::instance_norm_stats_f16(N, p.C, p.S, p.eps, vbuf(op.buffer), mean, rstd, stats_parts(p.S),
                                       m_workspace.as<char>() + f16_partials_offset(m_schedule), m_stream);
    plan_cuda::normalise_f16(N, p.C, p.S, vbuf(op.buffer), mean, rstd, p.affine ? weight(st.gamma) : nullptr,
                             p.affine ? weight(st.beta) : nullptr, op.lrelu, m_schedule.config.block.negative_slope,
                             m_stream);
    return;
  }
#endif
  float* x = fbuf(op.buffer);
  m_be->instance_norm_fwd(p, x, p.affine ? weight(st.gamma) : nullptr, p.affine ? weight(st.beta) : nullptr, x, mean,
                          rstd, m_stream);
  if (op.lrelu)
    m_be->leaky_relu_fwd(b.voxels * op.channels, m_schedule.config.block.negative_slope, x, x, m_stream);
}


void InferencePlan::run_conv(const PlanStep& s) {
#if defined(DEX_HAVE_CUDA)
  if (m_fused) {  // prologue, two operands, projection and statistics inside one kernel (+ the finalize kernels)
    plan_fused::ConvJob j;
    j.conv = s.conv;
    j.num_in = s.num_in;
    for (int i = 0; i < s.num_in; ++i) j.in[i] = fused_operand(s.in[i]);
    j.w = weight(s.weight);
    j.y = vbuf(s.out);
    j.slope = m_schedule.config.block.negative_slope;
    char* part = m_workspace.as<char>() + f16_partials_offset(m_schedule);
    const int64_t S = s.conv.out_voxels() / s.conv.N;
    if (s.out_stats >= 0) {
      j.stats = {stats_mean(s.out_stats), stats_rstd(s.out_stats), m_schedule.stats[s.out_stats].eps, part};
      part += align_up(fused::partial_bytes(s.conv.N, s.conv.K, S));
    }
    if (s.proj_out >= 0) {
      j.proj = s.proj;
      j.proj_w = weight(s.proj_weight);
      j.proj_y = vbuf(s.proj_out);
      if (s.proj_stats >= 0)
        j.proj_stats = {stats_mean(s.proj_stats), stats_rstd(s.proj_stats), m_schedule.stats[s.proj_stats].eps, part};
    }
    plan_fused::conv(j, plan_fused::Variant::Best, m_stream);
    return;
  }
#endif
  for (int i = 0; i < s.num_in; ++i) prologue(s.in[i]);
#if defined(DEX_HAVE_CUDA)
  if (f16()) {
    const void* w = weight(s.weight);
    if (s.num_in == 1)
      plan_cuda::conv3d_fprop_f16(s.conv, vbuf(s.in[0].buffer), w, vbuf(s.out), m_stream);
    else
      plan_cuda::conv3d_fprop_two_source_f16(s.conv, vbuf(s.in[0].buffer), s.in[0].channels, vbuf(s.in[1].buffer),
                                             s.in[1].channels, w, vbuf(s.out), m_stream);
    if (s.proj_out >= 0)
      plan_cuda::conv3d_fprop_f16(s.proj, vbuf(s.in[0].buffer), weight(s.proj_weight), vbuf(s.proj_out), m_stream);
    return;
  }
#endif
  void* ws = m_workspace.data();
  if (s.num_in == 1) {
    m_be->conv3d_fprop(s.conv, fbuf(s.in[0].buffer), weight(s.weight), fbuf(s.out), ws, m_stream);
  } else if (m_schedule.options.device == Device::CPU) {
    conv3d_fprop_two_source_cpu(s.conv, fbuf(s.in[0].buffer), s.in[0].channels, fbuf(s.in[1].buffer),
                                s.in[1].channels, weight(s.weight), fbuf(s.out), static_cast<float*>(ws));
  } else {
#if defined(DEX_HAVE_CUDA)
    plan_cuda::conv3d_fprop_two_source(s.conv, fbuf(s.in[0].buffer), s.in[0].channels, fbuf(s.in[1].buffer),
                                       s.in[1].channels, weight(s.weight), fbuf(s.out), m_stream);
#else
    DEX_CHECK(false, "inference plan: no two-source conv for ", device_name(m_schedule.options.device));
#endif
  }
  if (s.proj_out >= 0)
    m_be->conv3d_fprop(s.proj, fbuf(s.in[0].buffer), weight(s.proj_weight), fbuf(s.proj_out), ws, m_stream);
}

void InferencePlan::run_conv_transpose(const PlanStep& s) {
#if defined(DEX_HAVE_CUDA)
  if (m_fused) {
    const plan_fused::Operand in = fused_operand(s.in[0]);
    if (plan_fused::conv_transpose_supports(s.tconv, in)) {
      plan_fused::conv_transpose(s.tconv, in, weight(s.weight), vbuf(s.out), m_schedule.config.block.negative_slope,
                                 m_stream);
      return;
    }
    if (in.mean) {  // no fused kernel for this shape: normalise the raw input in place (its statistics exist)
      const PlanBuffer& b = m_schedule.buffers[s.in[0].buffer];
      plan_cuda::normalise_f16(s.tconv.N, in.channels, b.voxels / s.tconv.N, vbuf(s.in[0].buffer), in.mean, in.rstd,
                               in.gamma, in.beta, in.lrelu, m_schedule.config.block.negative_slope, m_stream);
    }
    plan_cuda::conv_transpose3d_fprop_f16(s.tconv, vbuf(s.in[0].buffer), weight(s.weight), vbuf(s.out), m_stream);
    return;
  }
#endif
  prologue(s.in[0]);
#if defined(DEX_HAVE_CUDA)
  if (f16()) {
    plan_cuda::conv_transpose3d_fprop_f16(s.tconv, vbuf(s.in[0].buffer), weight(s.weight), vbuf(s.out), m_stream);
    return;
  }
#endif
  m_be->conv_transpose3d_fprop(s.tconv, fbuf(s.in[0].buffer), weight(s.weight), fbuf(s.out), m_stream);
}

void InferencePlan::run_residual(const PlanStep& s) {
#if defined(DEX_HAVE_CUDA)
  if (m_fused) {
    const PlanBuffer& b = m_schedule.buffers[s.out];
    const int N = m_schedule.options.batch;
    plan_fused::residual(N, b.voxels / N, b.channels, fused_operand(s.in[0]), fused_operand(s.in[1]),
                         vbuf(s.out), s.lrelu_out, m_schedule.config.block.negative_slope, m_stream);
    return;
  }
#endif
  prologue(s.in[0]);
  prologue(s.in[1]);
  const PlanBuffer& b = m_schedule.buffers[s.out];
  const int64_t n = b.voxels * b.channels;
#if defined(DEX_HAVE_CUDA)
  if (f16()) {
    plan_cuda::add_f16(n, vbuf(s.in[0].buffer), vbuf(s.in[1].buffer), vbuf(s.out), s.lrelu_out,
                       m_schedule.config.block.negative_slope, m_stream);
    return;
  }
#endif
  float* y = fbuf(s.out);
  m_be->add_fwd(n, fbuf(s.in[0].buffer), fbuf(s.in[1].buffer), y, m_stream);
  if (s.lrelu_out) m_be->leaky_relu_fwd(n, m_schedule.config.block.negative_slope, y, y, m_stream);
}

void InferencePlan::run_head(const PlanStep& s) {
#if defined(DEX_HAVE_CUDA)
  if (m_fused) {
    const int N = m_schedule.options.batch;
    plan_fused::head(N, s.conv.out_voxels() / N, fused_operand(s.in[0]), s.conv.K, weight(s.weight),
                     weight(s.bias), fbuf(s.out), fbuf(s.probs),
                     reinterpret_cast<uint8_t*>(m_arena.as<char>() + m_schedule.buffers[s.mask].offset),
                     m_schedule.config.block.negative_slope, m_stream);
    return;
  }
#endif
  prologue(s.in[0]);
  float* z = fbuf(s.out);
  const int64_t v = s.conv.out_voxels();
#if defined(DEX_HAVE_CUDA)
  if (f16()) {
    plan_cuda::head_f16(v, s.conv.C, s.conv.K, vbuf(s.in[0].buffer), weight(s.weight), weight(s.bias), z, m_stream);
  } else
#endif
  {
    m_be->conv3d_fprop(s.conv, fbuf(s.in[0].buffer), weight(s.weight), z, m_workspace.data(), m_stream);
    m_be->bias_add_fwd(v, s.conv.K, weight(s.bias), z, m_stream);
  }
  m_be->softmax_fwd(v, s.conv.K, z, fbuf(s.probs), m_stream);
  m_be->argmax(v, s.conv.K, z, reinterpret_cast<uint8_t*>(m_arena.as<char>() + m_schedule.buffers[s.mask].offset),
               m_stream);
}

}  // namespace dex
