#include "infer/stage_timer.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace dex {

void StageTimer::add(const std::string& name, double ms) {
  for (auto& s : m_stages)
    if (s.first == name) {
      s.second += ms;
      return;
    }
  m_stages.emplace_back(name, ms);
}
double StageTimer::total_ms() const {
  double t = 0;
  for (auto& s : m_stages) t += s.second;
  return t;
}
double StageTimer::get(const std::string& name) const {
  for (auto& s : m_stages)
    if (s.first == name) return s.second;
  return 0;
}
std::string StageTimer::table() const {
  std::string out;
  char line[128];
  for (auto& s : m_stages) {
    std::snprintf(line, sizeof line, "  %-12s %10.1f ms\n", s.first.c_str(), s.second);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-12s %10.1f ms\n", "total", total_ms());
  return out + line;
}
std::string StageTimer::json() const {
  nlohmann::ordered_json j;
  for (auto& s : m_stages) j["stages_ms"][s.first] = s.second;
  j["total_ms"] = total_ms();
  return j.dump(2);
}

}  // namespace dex
