// Wall-clock time of named stages, in order, printable and writable as JSON (dex-infer --timing).
#pragma once
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace dex {

class StageTimer {
 public:
  using Clock = std::chrono::steady_clock;
  // Times fn() and records it under `name` (a repeated name adds up).
  template <class F>
  auto time(const std::string& name, F&& fn) {
    auto t0 = Clock::now();
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      add(name, ms_since(t0));
    } else {
      auto r = fn();
      add(name, ms_since(t0));
      return r;
    }
  }
  void add(const std::string& name, double ms);
  const std::vector<std::pair<std::string, double>>& stages() const { return m_stages; }
  double total_ms() const;
  double get(const std::string& name) const;  // 0 when absent
  std::string table() const;                  // aligned, one stage per line
  std::string json() const;                   // {"stages_ms": {...}, "total_ms": t}
  void clear() { m_stages.clear(); }
  static double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }

 private:
  std::vector<std::pair<std::string, double>> m_stages;
};

}  // namespace dex
