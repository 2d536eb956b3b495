#include "train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include <unistd.h>

#include "infer/preview.h"
#include "kernels/common.h"

namespace dex {

double dice_score(const uint8_t* pred, const uint8_t* gt, int64_t n, uint8_t cls) {
  int64_t inter = 0, p = 0, g = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool a = pred[i] == cls, b = gt[i] == cls;
    inter += a && b;
    p += a;
    g += b;
  }
  if (g == 0) return std::numeric_limits<double>::quiet_NaN();
  return 2.0 * static_cast<double>(inter) / static_cast<double>(p + g);
}

double bundle_mean_dice(const uint8_t* pred, const uint8_t* gt, int64_t n, int num_classes) {
  std::vector<double> d;
  for (int c = 0; c < num_classes; ++c) d.push_back(dice_score(pred, gt, n, static_cast<uint8_t>(c)));
  return nan_mean(d);
}

double nan_mean(const std::vector<double>& v) {
  double s = 0;
  int k = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      s += x;
      ++k;
    }
  return k ? s / k : std::numeric_limits<double>::quiet_NaN();
}

namespace {
// JSON has no NaN: write null, read null back as NaN.
nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }
double get_num(const nlohmann::json& j, const char* k) {
  if (!j.contains(k) || j[k].is_null()) return std::numeric_limits<double>::quiet_NaN();
  return j[k].get<double>();
}
}  // namespace

nlohmann::json EpochRecord::to_json() const {
  nlohmann::json j = {{"epoch", epoch},           {"steps", steps},
                      {"train_loss", num(train_loss)}, {"train_dice", num(train_dice)},
                      {"seconds", seconds},       {"samples_per_s", samples_per_s},
                      {"lr", lr},                 {"best", best}};
  j["data_s"] = data_s;
  j["clicks_s"] = clicks_s;
  j["click_forward_s"] = click_forward_s;
  j["step_s"] = step_s;
  j["val_s"] = val_s;
  if (validated) {
    j["val_spleen_dice"] = num(val_spleen_dice);
    j["val_mean_dice"] = num(val_mean_dice);
  }
  return j;
}

EpochRecord EpochRecord::from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.steps = j.value("steps", int64_t(0));
  r.train_loss = get_num(j, "train_loss");
  r.train_dice = get_num(j, "train_dice");
  r.validated = j.contains("val_mean_dice");
  r.val_spleen_dice = get_num(j, "val_spleen_dice");
  r.val_mean_dice = get_num(j, "val_mean_dice");
  r.seconds = get_num(j, "seconds");
  r.samples_per_s = get_num(j, "samples_per_s");
  r.lr = get_num(j, "lr");
  r.data_s = j.value("data_s", 0.0);  // absent in metrics.jsonl files written before these were recorded
  r.clicks_s = j.value("clicks_s", 0.0);
  r.click_forward_s = j.value("click_forward_s", 0.0);
  r.step_s = j.value("step_s", 0.0);
  r.val_s = j.value("val_s", 0.0);
  r.best = j.value("best", false);
  return r;
}

void write_metrics_jsonl(const std::string& path, const std::vector<EpochRecord>& records) {
  const std::string tmp = str(path, ".tmp.", getpid());
  {
    std::ofstream f(tmp);
    DEX_INPUT_CHECK(f.good(), "cannot write ", tmp);
    for (const auto& r : records) f << r.to_json().dump() << "\n";
    DEX_INPUT_CHECK(f.good(), "error writing ", tmp);
  }
  DEX_INPUT_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

std::vector<EpochRecord> read_metrics_jsonl(const std::string& path) {
  std::vector<EpochRecord> out;
  std::ifstream f(path);
  if (!f.good()) return out;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      out.push_back(EpochRecord::from_json(nlohmann::json::parse(line)));
    } catch (const std::exception& e) {
      throw InputError(str(path, " line ", n, ": not a metrics record (", e.what(), ")"));
    }
  }
  return out;
}

namespace {
struct Canvas {
  int w, h;
  std::vector<uint8_t> rgb;
  Canvas(int w_, int h_) : w(w_), h(h_), rgb(static_cast<size_t>(w_) * h_ * 3, 255) {}
  void put(int x, int y, const uint8_t c[3]) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
  }
  void line(int x0, int y0, int x1, int y1, const uint8_t c[3], int thick = 1) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      for (int a = 0; a < thick; ++a)
        for (int b = 0; b < thick; ++b) put(x0 + a, y0 + b, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }
};
}  // namespace

void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, int width, int height) {
  Canvas cv(width, height);
  const int l = 40, r = width - 10, t = 10, b = height - 30;
  const uint8_t grid[3] = {225, 225, 225}, axis[3] = {0, 0, 0};
  for (int i = 0; i <= 10; ++i) {
    const int y = b - (b - t) * i / 10;
    cv.line(l, y, r, y, grid);
  }
  cv.line(l, t, l, b, axis);
  cv.line(l, b, r, b, axis);
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0;
  for (const auto& s : series)
    for (double x : s.x) x0 = std::min(x0, x), x1 = std::max(x1, x);
  if (!(x0 <= x1)) {
    write_png_rgb(path, width, height, cv.rgb);
    return;
  }
  if (x1 == x0) x1 = x0 + 1;
  auto X = [&](double x) { return l + static_cast<int>(std::lround((r - l) * (x - x0) / (x1 - x0))); };
  auto Y = [&](double v) { return b - static_cast<int>(std::lround((b - t) * std::clamp(v, 0.0, 1.0))); };
  for (const auto& s : series) {
    int px = -1, py = -1;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      const int x = X(s.x[i]), y = Y(s.y[i]);
      cv.line(x - 1, y - 1, x + 1, y + 1, s.rgb.data(), 2);  // a dot at every point
      if (px >= 0) cv.line(px, py, x, y, s.rgb.data(), 2);
      px = x;
      py = y;
    }
    for (double x : s.x) cv.line(X(x), b, X(x), b + 4, axis);
  }
  write_png_rgb(path, width, height, cv.rgb);
}

void write_training_curve(const std::string& path, const std::vector<EpochRecord>& records, int width, int height) {
  std::vector<PlotSeries> s(3);
  s[0].rgb = {210, 30, 30};   // training loss / its maximum
  s[1].rgb = {30, 70, 220};   // validation spleen Dice
  s[2].rgb = {20, 160, 60};   // validation mean Dice (the bundle's metric)
  double max_loss = 1e-12;
  for (const auto& rec : records)
    if (std::isfinite(rec.train_loss)) max_loss = std::max(max_loss, rec.train_loss);
  for (const auto& rec : records) {
    s[0].x.push_back(double(rec.epoch));
    s[0].y.push_back(rec.train_loss / max_loss);
    if (!rec.validated) continue;
    s[1].x.push_back(double(rec.epoch));
    s[1].y.push_back(rec.val_spleen_dice);
    s[2].x.push_back(double(rec.epoch));
    s[2].y.push_back(rec.val_mean_dice);
  }
  write_line_plot(path, s, width, height);
}

}  // namespace dex
