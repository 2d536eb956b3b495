// Central finite-difference check of the tape's backward (STYLE.md §2 "Gradients"): L = sum_i y_i * r_i with a
// seeded random projection r; analytic dL/dx from tape.backward() vs the 4-point stencil
// (8(L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h, accumulated in double, on tiny shapes.
// The kernels are fp32, so the stencil carries a rounding noise of about u32 * sum|y_i r_i| / h: the bound is
// |g - g_fd| <= atol + rtol*|g_fd|, rtol = 1e-3 (stencil truncation is O(h^4)), atol = rtol*rms(g_fd) + 4*u32*S/h.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "tests/testing.h"

namespace dex::testing {

struct FdInput {
  Tensor shape;           // Layout::Weight inputs act as parameters (gradients accumulate, grad_slot -1)
  float lo = -1.f, hi = 1.f;
  float min_abs = 0.f;    // keep values away from a kink (leaky_relu at 0)
};

struct FdCase {
  std::string name;
  std::vector<FdInput> inputs;
  std::function<Tensor(Tape&, const std::vector<Tensor>&)> forward;
  double h = 1e-2;
};

struct FdReport {
  bool ok = true;
  std::string message;
  double worst_ratio = 0;
};

inline FdReport run_fd_check(const FdCase& c, uint64_t seed) {
  Arena arena;
  Tape tape(arena);
  const Backend& be = tape.be();
  std::vector<Tensor> in;
  std::vector<std::vector<float>> host;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const FdInput& fi = c.inputs[i];
    Tensor t;
    if (fi.shape.layout == Layout::Weight) {
      t = fi.shape;
      t.data = arena.alloc<float>(t.numel());
      t.grad = arena.alloc<float>(t.numel());
      be.fill_zero(t.grad, t.bytes(), nullptr);
      t.grad_slot = -1;
    } else {
      t = tape.alloc(fi.shape, true);
    }
    std::vector<float> v = random_vector(t.numel(), seed * 131 + i, fi.lo, fi.hi);
    for (float& x : v)
      if (std::fabs(x) < fi.min_abs) x = x < 0 ? x - fi.min_abs : x + fi.min_abs;
    std::copy(v.begin(), v.end(), t.data);
    host.push_back(v);
    in.push_back(t);
  }
  Tensor y = c.forward(tape, in);
  std::vector<float> r = random_vector(y.numel(), seed * 131 + 99);
  double S = 0;
  for (int64_t i = 0; i < y.numel(); ++i) S += std::fabs(double(y.data[i]) * r[i]);
  std::copy(r.begin(), r.end(), y.grad);
  tape.mark_written(y);
  tape.backward();

  auto loss = [&]() {
    NoGradGuard ng(tape);
    size_t mark = arena.mark();
    Tensor yy = c.forward(tape, in);
    double L = 0;
    for (int64_t i = 0; i < yy.numel(); ++i) L += double(yy.data[i]) * r[i];
    arena.release_to(mark);
    return L;
  };
  FdReport rep;
  const double u32 = 1.0 / (1 << 24), rtol = 1e-3;
  for (size_t i = 0; i < in.size(); ++i) {
    Tensor& t = in[i];
    if (!t.grad) continue;
    std::vector<double> fd(t.numel());
    for (int64_t j = 0; j < t.numel(); ++j) {
      const float x0 = t.data[j];
      double Lv[4];
      const double steps[4] = {c.h, -c.h, 2 * c.h, -2 * c.h};
      for (int s = 0; s < 4; ++s) {
        t.data[j] = static_cast<float>(x0 + steps[s]);
        Lv[s] = loss();
      }
      t.data[j] = x0;
      fd[j] = (8 * (Lv[0] - Lv[1]) - (Lv[2] - Lv[3])) / (12 * c.h);
    }
    const double atol = rtol * rms(fd) + 4 * u32 * S / c.h;
    CompareResult cr = compare(t.grad, fd.data(), t.numel(), rtol, atol, 1e-3);
    rep.worst_ratio = std::max(rep.worst_ratio, cr.worst_ratio);
    rep.message += str(c.name, " input ", i, " ", t.shape_str(), ": ", cr.message, "\n");
    if (!cr.ok) rep.ok = false;
  }
  return rep;
}

}  // namespace dex::testing
