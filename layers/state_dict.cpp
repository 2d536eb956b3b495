#include "layers/state_dict.h"

#include <algorithm>
#include <cstring>

#include "kernels/common.h"

namespace dex {

namespace {

const std::string kSkip = "skip_layers.";
const std::string kNext = "next_layer.";

bool starts_with(const std::string& s, size_t pos, const std::string& prefix) {
  return s.compare(pos, prefix.size(), prefix) == 0;
}

// An alias parsed as: `skip_layers.` + depth x `next_layer.` + kind + rest.
struct Alias {
  int depth = 0;
  enum Kind { Down, Up, Bottleneck } kind = Bottleneck;
  std::string rest;  // after "downsample." / "upsample." (or after the last "next_layer." for the bottleneck)
};

Alias parse_alias(const std::string& name) {
  Alias a;
  size_t pos = kSkip.size();
  while (starts_with(name, pos, kNext)) {
    ++a.depth;
    pos += kNext.size();
  }
  if (starts_with(name, pos, "downsample.")) {
    a.kind = Alias::Down;
    a.rest = name.substr(pos + std::strlen("downsample."));
  } else if (starts_with(name, pos, "upsample.")) {
    a.kind = Alias::Up;
    a.rest = name.substr(pos + std::strlen("upsample."));
  } else {
    a.kind = Alias::Bottleneck;
    a.rest = name.substr(pos);
  }
  DEX_INPUT_CHECK(!a.rest.empty() && (a.kind != Alias::Bottleneck || a.depth > 0),
                  "state_dict key '", name, "' is a skip_layers name that matches no DynUNet alias (spec §2.3)");
  return a;
}

bool is_alias(const std::string& name) { return name.compare(0, kSkip.size(), kSkip) == 0; }

}  // namespace

std::string canonical_dynunet_name(const std::string& name, int num_upsamples) {
  if (!is_alias(name)) return name;
  Alias a = parse_alias(name);
  switch (a.kind) {
    case Alias::Down:
      return a.depth == 0 ? "input_block." + a.rest : str("downsamples.", a.depth - 1, ".", a.rest);
    case Alias::Up:
      DEX_INPUT_CHECK(a.depth < num_upsamples, "state_dict key '", name, "' is an upsample alias at depth ", a.depth,
                      " but the network has only ", num_upsamples, " up blocks");
      return str("upsamples.", num_upsamples - 1 - a.depth, ".", a.rest);
    case Alias::Bottleneck:
      return "bottleneck." + a.rest;
  }
  return name;
}

int infer_dynunet_upsamples(const StateDict& sd) {
  // The bottleneck sits at depth = number of up blocks; the deepest downsample alias at depth - 1.
  int from_bottleneck = -1, from_down = -1, from_canonical = -1;
  for (const auto& kv : sd) {
    const std::string& k = kv.first;
    if (is_alias(k)) {
      Alias a = parse_alias(k);
      if (a.kind == Alias::Bottleneck) from_bottleneck = std::max(from_bottleneck, a.depth);
      if (a.kind == Alias::Down) from_down = std::max(from_down, a.depth + 1);
    } else if (starts_with(k, 0, "upsamples.") || starts_with(k, 0, "downsamples.")) {
      bool up = k[0] == 'u';
      size_t pos = up ? 10 : 12;
      size_t end = k.find('.', pos);
      if (end == std::string::npos || end == pos) continue;
      int idx = 0;
      bool digits = true;
      for (size_t i = pos; i < end; ++i) {
        if (k[i] < '0' || k[i] > '9' || idx > 100000) { digits = false; break; }
        idx = idx * 10 + (k[i] - '0');
      }
      if (!digits) continue;
      // n downsamples -> n + 1 up blocks
      from_canonical = std::max(from_canonical, up ? idx + 1 : idx + 2);
    }
  }
  if (from_bottleneck > 0) return from_bottleneck;
  if (from_down > 0) return std::max(from_down, from_canonical);
  return from_canonical > 0 ? from_canonical : 5;
}

void canonicalize_dynunet_names(StateDict& sd) {
  bool any = false;
  for (const auto& kv : sd) any = any || is_alias(kv.first);
  if (!any) return;
  int num_up = infer_dynunet_upsamples(sd);
  StateDict out;
  std::map<std::string, std::string> source;  // canonical name -> the key it came from
  // Canonical names first, so an alias is compared against them.
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& kv : sd) {
      if (is_alias(kv.first) != (pass == 1)) continue;
      std::string canon = canonical_dynunet_name(kv.first, num_up);
      auto it = out.find(canon);
      if (it == out.end()) {
        source[canon] = kv.first;
        out.emplace(canon, std::move(kv.second));
        continue;
      }
      const NamedTensor& a = it->second;
      const NamedTensor& b = kv.second;
      bool same = a.shape == b.shape && a.data.size() == b.data.size() &&
                  (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
      DEX_INPUT_CHECK(same, "state_dict keys '", source[canon], "' and '", kv.first, "' both name '", canon,
                      "' but hold different ", (a.shape == b.shape ? "values" : "shapes"),
                      " (the skip_layers aliases must share storage with the canonical tensors)");
    }
  }
  sd = std::move(out);
}

}  // namespace dex
