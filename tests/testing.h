// Shared test helpers: fixture files written by scripts/fixture_io.py, seeded random fills, and the
// tolerance check of STYLE.md §2 (elementwise atol + rtol*|ref| and an NMSE ceiling, worst element printed).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "kernels/common.h"
#include "kernels/rng.h"

namespace dex::testing {

inline std::string test_data(const std::string& rel) { return std::string(DEX_TEST_DATA) + "/" + rel; }
inline std::string shared_dir(const std::string& rel) {
#ifdef DEX_SHARED_DIR
  return std::string(DEX_SHARED_DIR) + "/" + rel;
#else
  return "../shared/" + rel;
#endif
}

// Runs a shell command with stdout and stderr sent to `log_path`: its exit status (-1 if it did not exit) and output.
struct CommandResult {
  int rc = -1;
  std::string log;
};
inline CommandResult run_logged(const std::string& cmd, const std::string& log_path) {
  const int status = std::system((cmd + " > " + log_path + " 2>&1").c_str());
  std::ifstream f(log_path);
  CommandResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.log.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return r;
}

// A named tensor from a fixture file. Data is always converted to double on load.
struct FixtureTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  std::vector<float> f32() const { return std::vector<float>(data.begin(), data.end()); }
};

// File format "DEXFIX1\n": then records until EOF:
//   u32 name_len, name bytes, u32 dtype (0=f32, 1=f64, 2=i64, 3=u8), u32 ndim, i64 dims[ndim], raw LE data.
inline std::map<std::string, FixtureTensor> load_fixture(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open fixture " + path + " (regenerate with scripts/gen_fixtures_*.py)");
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "DEXFIX1\n", 8) != 0) throw Error("not a dex fixture: " + path);
  std::map<std::string, FixtureTensor> out;
  while (true) {
    uint32_t nlen;
    if (!f.read(reinterpret_cast<char*>(&nlen), 4)) break;
    std::string name(nlen, '\0');
    f.read(name.data(), nlen);
    uint32_t dtype, ndim;
    f.read(reinterpret_cast<char*>(&dtype), 4);
    f.read(reinterpret_cast<char*>(&ndim), 4);
    FixtureTensor t;
    t.shape.resize(ndim);
    int64_t n = 1;
    for (auto& d : t.shape) {
      f.read(reinterpret_cast<char*>(&d), 8);
      n *= d;
    }
    t.data.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      switch (dtype) {
        case 0: { float v; f.read(reinterpret_cast<char*>(&v), 4); t.data[i] = v; break; }
        case 1: { double v; f.read(reinterpret_cast<char*>(&v), 8); t.data[i] = v; break; }
        case 2: { int64_t v; f.read(reinterpret_cast<char*>(&v), 8); t.data[i] = static_cast<double>(v); break; }
        case 3: { uint8_t v; f.read(reinterpret_cast<char*>(&v), 1); t.data[i] = v; break; }
        default: throw Error("fixture " + path + ": unknown dtype code for " + name);
      }
    }
    if (!f) throw Error("fixture " + path + " is truncated at tensor " + name);
    out.emplace(name, std::move(t));
  }
  return out;
}

// Seeded uniform fill in [lo, hi).
inline std::vector<float> random_vector(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * rng_uniform(seed, rng_stream(RngStream::Test), i);
  return v;
}
// Small integers in [lo, hi] (exactness passes).
inline std::vector<float> random_ints(int64_t n, uint64_t seed, int lo, int hi) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(lo + static_cast<int>(rng_u32(seed, rng_stream(RngStream::Test, 1), i) % (hi - lo + 1)));
  return v;
}

struct CompareResult {
  bool ok = true;
  double nmse = 0, worst_ratio = 0, max_abs = 0, max_rel = 0;
  int64_t worst_index = -1;
  std::string message;
};

// |x - r| <= atol + rtol*|r| elementwise, and NMSE = sum (x-r)^2 / sum r^2 <= nmse_max.
// NaN in x fails unless r is NaN at the same index; infinities must match exactly.
template <class A, class B>
CompareResult compare(const A* x, const B* r, int64_t n, double rtol, double atol, double nmse_max) {
  CompareResult c;
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    double xv = static_cast<double>(x[i]), rv = static_cast<double>(r[i]);
    if (std::isnan(rv) || std::isnan(xv) || std::isinf(rv) || std::isinf(xv)) {
      bool same = (std::isnan(rv) && std::isnan(xv)) || (xv == rv);
      if (!same && c.ok) {
        c.ok = false;
        c.worst_index = i;
        c.message = str("non-finite mismatch at ", i, ": got ", xv, ", expected ", rv);
      }
      continue;
    }
    double d = std::fabs(xv - rv);
    num += d * d;
    den += rv * rv;
    double bound = atol + rtol * std::fabs(rv);
    double ratio = bound > 0 ? d / bound : (d > 0 ? INFINITY : 0);
    c.max_abs = std::max(c.max_abs, d);
    if (std::fabs(rv) > 0) c.max_rel = std::max(c.max_rel, d / std::fabs(rv));
    if (ratio > c.worst_ratio) {
      c.worst_ratio = ratio;
      if (c.message.empty() || c.ok) c.worst_index = i;
    }
  }
  c.nmse = den > 0 ? num / den : num;
  if (c.ok && c.worst_ratio > 1.0) {
    c.ok = false;
    c.message = str("element ", c.worst_index, ": got ", static_cast<double>(x[c.worst_index]), ", expected ",
                    static_cast<double>(r[c.worst_index]), " (", c.worst_ratio, "x the bound atol ", atol, " + rtol ",
                    rtol, "*|ref|)");
  }
  if (c.ok && c.nmse > nmse_max) {
    c.ok = false;
    c.message = str("NMSE ", c.nmse, " above the ceiling ", nmse_max);
  }
  if (c.ok) c.message = str("ok: worst element at ", c.worst_ratio * 100, "% of its bound, NMSE ", c.nmse);
  return c;
}

inline double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0 : std::sqrt(s / v.size());
}

}  // namespace dex::testing

// EXPECT_CLOSE(x_ptr, ref_ptr, n, rtol, atol, nmse): prints the worst element and its % of threshold.
#define EXPECT_CLOSE(x, r, n, rtol, atol, nmse)                                         \
  do {                                                                                  \
    auto _c = ::dex::testing::compare((x), (r), (n), (rtol), (atol), (nmse));           \
    EXPECT_TRUE(_c.ok) << _c.message;                                                   \
    if (_c.ok) std::cout << "[ compare  ] " << _c.message << "\n";                      \
  } while (0)
