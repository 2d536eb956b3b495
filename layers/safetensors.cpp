#include "layers/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "kernels/common.h"
#include "kernels/half.h"

namespace dex {

namespace {

using json = nlohmann::json;

// The safetensors library refuses headers above 100 MB; so do we (it also bounds our allocation).
constexpr uint64_t kMaxHeader = 100u * 1000u * 1000u;

struct DtypeInfo {
  const char* name;
  size_t size;
  bool readable;  // converted to float on read
};
// Every dtype of the format, so an integer or fp8 tensor gets "not supported" rather than "unknown".
const DtypeInfo kDtypes[] = {{"F32", 4, true},  {"F16", 2, true},  {"BF16", 2, true}, {"F64", 8, true},
                             {"BOOL", 1, false}, {"U8", 1, false},  {"I8", 1, false},  {"F8_E5M2", 1, false},
                             {"F8_E4M3", 1, false}, {"I16", 2, false}, {"U16", 2, false}, {"I32", 4, false},
                             {"U32", 4, false}, {"I64", 8, false},  {"U64", 8, false}};

const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

void to_float(const DtypeInfo& dt, const std::vector<char>& raw, std::vector<float>& out) {
  size_t n = out.size();
  const std::string name = dt.name;
  if (name == "F16" || name == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, raw.data() + 2 * i, 2);
      out[i] = name == "F16" ? f16_bits_to_f32(b) : bf16_bits_to_f32(b);
    }
  } else if (name == "F64") {
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, raw.data() + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  }
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t numel, begin, end;
};

}  // namespace

void save_safetensors(const std::string& path, const StateDict& sd, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& kv : sd) {
    const NamedTensor& t = kv.second;
    DEX_INPUT_CHECK(kv.first != "__metadata__", "save_safetensors(", path, "): '__metadata__' is reserved, not a tensor name");
    int64_t n = 1;
    for (int64_t d : t.shape) {
      DEX_INPUT_CHECK(d >= 0, "save_safetensors(", path, "): tensor '", kv.first, "' has a negative dimension");
      n *= d;
    }
    DEX_INPUT_CHECK(static_cast<size_t>(n) == t.data.size(), "save_safetensors(", path, "): tensor '", kv.first,
                    "' has ", t.data.size(), " values but its shape needs ", n);
    uint64_t bytes = static_cast<uint64_t>(n) * 4;
    header[kv.first] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h;
  try {
    h = header.dump();
  } catch (const json::exception& e) {  // names and metadata must be valid UTF-8
    throw InputError(str("save_safetensors(", path, "): a tensor name or metadata value is not valid UTF-8 (",
                         e.what(), ")"));
  }
  h.append((8 - h.size() % 8) % 8, ' ');

  static std::atomic<unsigned> counter{0};
  std::string tmp = str(path, ".tmp.", getpid(), ".", counter++);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  DEX_INPUT_CHECK(f, "cannot write model file ", path, " (creating ", tmp, ": ", std::strerror(errno), ")");
  uint64_t n = h.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const auto& kv : sd) {  // same (name) order as the header offsets; host is little-endian
    const auto& d = kv.second.data;
    if (ok && !d.empty()) ok = std::fwrite(d.data(), sizeof(float), d.size(), f) == d.size();
  }
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw InputError(str("cannot write model file ", path, ": ", std::strerror(err)));
  }
}

bool is_safetensors_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint8_t b[9];
  if (!f.read(reinterpret_cast<char*>(b), 9)) return false;
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(b[i]) << (8 * i);
  return n >= 2 && n <= kMaxHeader && b[8] == '{';
}

StateDict load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::error_code ec;
  DEX_INPUT_CHECK(!std::filesystem::is_directory(path, ec), "model file ", path, " is a directory");
  std::ifstream f(path, std::ios::binary);
  DEX_INPUT_CHECK(f, "cannot open model file ", path);
  f.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  const std::string where = "safetensors file " + path;
  DEX_INPUT_CHECK(file_size >= 8, where, " is too short (", file_size, " bytes) for the 8-byte header length");
  uint8_t len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  DEX_INPUT_CHECK(f, where, ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  DEX_INPUT_CHECK(n <= file_size - 8, where, ": header length ", n, " runs past the end of the file (", file_size,
                  " bytes); truncated or not a safetensors file");
  DEX_INPUT_CHECK(n <= kMaxHeader, where, ": header length ", n, " is above the 100 MB limit");
  std::string h(n, '\0');
  f.read(h.data(), static_cast<std::streamsize>(n));
  DEX_INPUT_CHECK(f, where, ": cannot read the header");
  const uint64_t data_size = file_size - 8 - n;

  json header = json::parse(h, nullptr, /*allow_exceptions=*/false);
  DEX_INPUT_CHECK(!header.is_discarded(), where, ": the header is not valid JSON");
  DEX_INPUT_CHECK(header.is_object(), where, ": the header is not a JSON object");

  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      DEX_INPUT_CHECK(v.is_object(), where, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        DEX_INPUT_CHECK(m.value().is_string(), where, ": __metadata__ value '", m.key(), "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = where + ", tensor '" + name + "'";
    DEX_INPUT_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), what,
                    ": needs an object with dtype, shape and data_offsets");
    DEX_INPUT_CHECK(v["dtype"].is_string(), what, ": dtype is not a string");
    Entry e;
    e.name = name;
    std::string dt = v["dtype"].get<std::string>();
    e.dtype = find_dtype(dt);
    DEX_INPUT_CHECK(e.dtype, what, ": unknown dtype '", dt, "'");
    DEX_INPUT_CHECK(e.dtype->readable, what, ": dtype ", dt, " is not supported (dex reads F32, F16, BF16, F64)");
    const json& shape = v["shape"];
    DEX_INPUT_CHECK(shape.is_array(), what, ": shape is not an array");
    e.numel = 1;
    for (const json& d : shape) {
      DEX_INPUT_CHECK(d.is_number_unsigned(), what, ": shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      DEX_INPUT_CHECK(dim <= (uint64_t{1} << 62), what, ": shape entry ", dim, " is out of range");
      DEX_INPUT_CHECK(dim == 0 || e.numel <= data_size / dim, what, ": shape needs more data than the file holds");
      e.numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& off = v["data_offsets"];
    DEX_INPUT_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                    what, ": data_offsets must be two non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    DEX_INPUT_CHECK(e.begin <= e.end && e.end <= data_size, what, ": data_offsets [", e.begin, ", ", e.end,
                    "] are out of range (the data section has ", data_size, " bytes)");
    DEX_INPUT_CHECK(e.end - e.begin == e.numel * e.dtype->size, what, ": data_offsets span ", e.end - e.begin,
                    " bytes but shape and dtype need ", e.numel * e.dtype->size);
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const Entry& e : entries) {
    DEX_INPUT_CHECK(e.begin >= expect, where, ", tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end,
                    "] overlap the previous tensor");
    DEX_INPUT_CHECK(e.begin == expect, where, ", tensor '", e.name, "': gap in the data before offset ", e.begin);
    expect = e.end;
  }
  DEX_INPUT_CHECK(expect == data_size, where, ": the data section has ", data_size, " bytes but the tensors cover ",
                  expect);

  StateDict sd;
  std::vector<char> raw;
  for (const Entry& e : entries) {
    NamedTensor t;
    t.shape = e.shape;
    t.data.resize(e.numel);
    f.seekg(static_cast<std::streamoff>(8 + n + e.begin));
    if (std::strcmp(e.dtype->name, "F32") == 0) {  // host is little-endian, like the file
      f.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(e.end - e.begin));
    } else {
      raw.resize(e.end - e.begin);
      f.read(raw.data(), static_cast<std::streamsize>(raw.size()));
      to_float(*e.dtype, raw, t.data);
    }
    DEX_INPUT_CHECK(f, where, ", tensor '", e.name, "': read failed");
    sd.emplace(e.name, std::move(t));
  }
  return sd;
}

}  // namespace dex
