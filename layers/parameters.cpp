#include "layers/parameters.h"

#include "kernels/backend.h"

namespace dex {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
// dex's internal shape for a PyTorch shape.
Tensor internal_shape(const std::vector<int64_t>& t, ParamKind kind) {
  switch (kind) {
    case ParamKind::Conv: return Tensor({t[0], t[2], t[3], t[4], t[1]}, Layout::Weight);
    case ParamKind::ConvTranspose: return Tensor({t[1], t[2], t[3], t[4], t[0]}, Layout::Weight);
    case ParamKind::Bias:
    case ParamKind::NormWeight: return Tensor({t[0]}, Layout::Weight);
  }
  return Tensor();
}
}  // namespace

int ParameterSet::declare(const std::string& name, std::vector<int64_t> torch_shape, ParamKind kind) {
  DEX_CHECK(!allocated(), "ParameterSet: declare(", name, ") after allocate()");
  DEX_CHECK(index_of(name) < 0, "ParameterSet: duplicate parameter name ", name);
  const size_t want = (kind == ParamKind::Bias || kind == ParamKind::NormWeight) ? 1 : 5;
  DEX_CHECK(torch_shape.size() == want, "ParameterSet: ", name, " needs a rank-", want, " shape, got ",
            shape_str(torch_shape));
  ParamSpec s;
  s.name = name;
  s.kind = kind;
  s.numel = 1;
  for (int64_t d : torch_shape) {
    DEX_CHECK(d > 0, "ParameterSet: ", name, " has a non-positive dimension in ", shape_str(torch_shape));
    s.numel *= d;
  }
  s.torch_shape = std::move(torch_shape);
  s.offset = m_numel;
  m_numel += s.numel;
  m_tensors.push_back(internal_shape(s.torch_shape, kind));
  m_specs.push_back(std::move(s));
  return static_cast<int>(m_specs.size()) - 1;
}

void ParameterSet::allocate(Device device) {
  DEX_CHECK(!allocated(), "ParameterSet: allocate() called twice");
  DEX_CHECK(m_numel > 0, "ParameterSet: nothing declared");
  const Backend& be = backend(device);
  m_device = device;
  m_values = Buffer(*be.allocator, bytes());
  m_grads = Buffer(*be.allocator, bytes());
  be.fill_zero(m_values.data(), bytes(), nullptr);
  be.fill_zero(m_grads.data(), bytes(), nullptr);
  for (size_t i = 0; i < m_specs.size(); ++i) {
    Tensor& t = m_tensors[i];
    t.device = device;
    t.data = values() + m_specs[i].offset;
    t.grad = grads() + m_specs[i].offset;
    t.grad_slot = -1;  // parameter: gradients accumulate
  }
}

int ParameterSet::index_of(const std::string& name) const {
  for (size_t i = 0; i < m_specs.size(); ++i)
    if (m_specs[i].name == name) return static_cast<int>(i);
  return -1;
}

const Tensor& ParameterSet::tensor(int i) const {
  DEX_CHECK(allocated(), "ParameterSet: tensor(", i, ") before allocate()");
  return m_tensors.at(i);
}

void ParameterSet::zero_grad() { backend(m_device).fill_zero(grads(), bytes(), nullptr); }

std::vector<float> ParameterSet::get_torch(int i) const { return to_torch(i, tensor(i).data); }
std::vector<float> ParameterSet::grad_torch(int i) const { return to_torch(i, tensor(i).grad); }

std::vector<float> ParameterSet::to_torch(int i, const float* src) const {
  const ParamSpec& s = spec(i);
  const Tensor& t = tensor(i);
  std::vector<float> internal(s.numel), out(s.numel);
  backend(m_device).copy(internal.data(), Device::CPU, src, m_device, s.numel * sizeof(float), nullptr);
  if (s.kind == ParamKind::Bias || s.kind == ParamKind::NormWeight) return internal;
  const int64_t K = t.dims[0], taps = t.dims[1] * t.dims[2] * t.dims[3], C = t.dims[4];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t r = 0; r < taps; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const float v = internal[(k * taps + r) * C + c];
        if (s.kind == ParamKind::Conv) out[(k * C + c) * taps + r] = v;  // [K][C][taps]
        else out[(c * K + k) * taps + r] = v;                           // [C][K][taps]
      }
  return out;
}

void ParameterSet::set_torch(int i, const std::vector<float>& torch) {
  const ParamSpec& s = spec(i);
  const Tensor& t = tensor(i);
  DEX_CHECK(static_cast<int64_t>(torch.size()) == s.numel, "set_torch(", s.name, "): ", torch.size(),
            " values for ", s.numel, " elements");
  std::vector<float> internal(s.numel);
  if (s.kind == ParamKind::Bias || s.kind == ParamKind::NormWeight) {
    internal = torch;
  } else {
    const int64_t K = t.dims[0], taps = t.dims[1] * t.dims[2] * t.dims[3], C = t.dims[4];
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < taps; ++r)
        for (int64_t c = 0; c < C; ++c)
          internal[(k * taps + r) * C + c] =
              s.kind == ParamKind::Conv ? torch[(k * C + c) * taps + r] : torch[(c * K + k) * taps + r];
  }
  backend(m_device).copy(t.data, m_device, internal.data(), Device::CPU, s.numel * sizeof(float), nullptr);
}

StateDict ParameterSet::state_dict() const {
  StateDict sd;
  for (int i = 0; i < size(); ++i) sd[spec(i).name] = NamedTensor{spec(i).torch_shape, get_torch(i)};
  return sd;
}

void ParameterSet::load_state_dict(const StateDict& in) {
  StateDict sd = in;
  canonicalize_dynunet_names(sd);
  for (const auto& kv : sd)
    DEX_INPUT_CHECK(index_of(kv.first) >= 0, "state_dict: unknown tensor '", kv.first, "' (shape ",
                    shape_str(kv.second.shape), ") is not a parameter of this model");
  for (int i = 0; i < size(); ++i) {
    const ParamSpec& s = spec(i);
    auto it = sd.find(s.name);
    DEX_INPUT_CHECK(it != sd.end(), "state_dict: missing tensor '", s.name, "' (expected shape ",
                    shape_str(s.torch_shape), ")");
    DEX_INPUT_CHECK(it->second.shape == s.torch_shape, "state_dict: tensor '", s.name, "' has shape ",
                    shape_str(it->second.shape), ", expected ", shape_str(s.torch_shape));
    DEX_INPUT_CHECK(static_cast<int64_t>(it->second.data.size()) == s.numel, "state_dict: tensor '", s.name,
                    "' has ", it->second.data.size(), " values for shape ", shape_str(s.torch_shape));
  }
  for (int i = 0; i < size(); ++i) set_torch(i, sd.at(spec(i).name).data);
}

}  // namespace dex
