// dex-phantom: writes a synthetic spleen CT dataset in the Medical Segmentation Decathlon layout
// (imagesTr/, labelsTr/, imagesTs/, dataset.json).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <chrono>
#include <fstream>

#include "data/dataset.h"
#include "data/phantom.h"
#include "kernels/common.h"

namespace {

const char* kUsage =
    "usage: dex-phantom --out DIR --count N --seed S [--size small|full] [--view abdomen|spleen]\n"
    "                   [--test-count T] [--orientation mixed|lps|ras|als|spl] [--cache-rate R] [--workers W]\n"
    "                   [--quiet]\n"
    "  Writes N training pairs (imagesTr/spleen_<i>.nii.gz int16 HU, labelsTr/spleen_<i>.nii.gz uint8, 1 = spleen),\n"
    "  T test images (imagesTs/) and dataset.json into DIR (created if missing; its parent must exist).\n"
    "  --size small: 64-96 voxels per axis (tests, CPU demo); full: 512 x 512 x 80-160 like MSD.\n"
    "  --view abdomen (default): the whole abdominal cross-section, as in an MSD scan; spleen: a box around the\n"
    "    spleen, 120-150 mm per axis or more where the spleen needs it (a left-upper-quadrant crop; 48-64 voxels\n"
    "    per axis small, 192-256 full), so the spleen keeps ~1000-3000 voxels on a 32^3 network grid (the\n"
    "    convergence test of the small configuration).\n"
    "  --orientation: storage of the arrays; mixed (default) cycles lps, ras, als, spl (als/spl permute axes).\n"
    "  --cache-rate R: afterwards, load the training set into dex's case cache (read, normalise labels, orient RAS,\n"
    "    window; W threads) at cache rate R and report the bytes cached and the process's resident memory.\n";

// Resident set size of this process (Linux /proc), in bytes; 0 where unavailable.
double rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      double kb = 0;
      f >> kb;
      return kb * 1024;
    }
    std::getline(f, key);
  }
  return 0;
}

int64_t parse_int(const std::string& flag, const std::string& v, int64_t lo) {
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo)
    throw dex::InputError(flag + " expects an integer >= " + std::to_string(lo) + ", got '" + v + "'");
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string out;
    int64_t count = -1, test_count = 0, workers = 1;
    double cache_rate = -1;
    uint64_t seed = 0;
    bool have_seed = false, quiet = false;
    dex::PhantomOptions opt;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if (a == "--quiet") {
        quiet = true;
        continue;
      }
      if (i + 1 >= argc) throw dex::InputError("missing value after " + a);
      const std::string v = argv[++i];
      if (a == "--out") out = v;
      else if (a == "--count") count = parse_int(a, v, 0);
      else if (a == "--test-count") test_count = parse_int(a, v, 0);
      else if (a == "--workers") workers = parse_int(a, v, 1);
      else if (a == "--cache-rate") {
        char* end = nullptr;
        cache_rate = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !(cache_rate >= 0 && cache_rate <= 1))
          throw dex::InputError("--cache-rate expects a number in [0, 1], got '" + v + "'");
      }
      else if (a == "--seed") { seed = static_cast<uint64_t>(parse_int(a, v, 0)); have_seed = true; }
      else if (a == "--size") {
        if (v == "small") opt.size = dex::PhantomSize::Small;
        else if (v == "full") opt.size = dex::PhantomSize::Full;
        else throw dex::InputError("--size expects small or full, got '" + v + "'");
      } else if (a == "--view") opt.view = dex::parse_phantom_view(v);
      else if (a == "--orientation") opt.orientation = dex::parse_phantom_orientation(v);
      else throw dex::InputError("unknown option " + a);
    }
    if (out.empty() || count < 0 || !have_seed) throw dex::InputError("--out, --count and --seed are required");
    const auto st = dex::write_phantom_dataset(out, count, seed, opt, test_count, !quiet);
    std::printf("wrote %lld training + %lld test phantoms (%.1f Mvoxels) to %s in %.2f s (generation %.2f s)\n",
                static_cast<long long>(count), static_cast<long long>(test_count), st.voxels / 1e6, out.c_str(),
                st.seconds, st.generate_seconds);
    if (cache_rate >= 0) {
      const double rss0 = rss_bytes();
      const auto t0 = std::chrono::steady_clock::now();
      const auto items = dex::list_training_items(out);
      dex::CaseCache cache(items, dex::make_label_mapping(dex::bundle_label_names(), dex::read_dataset_labels(out)),
                           cache_rate, static_cast<int>(workers));
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double rss1 = rss_bytes();
      std::printf("cache: %zu of %zu cases cached at cache_rate %.2f in %.2f s (%lld workers): %.3f GB of voxels "
                  "(float32 image + uint8 label); resident memory %.3f GB -> %.3f GB (+%.3f GB)\n",
                  cache.cached_count(), cache.size(), cache_rate, secs, static_cast<long long>(workers),
                  cache.cached_bytes() / 1e9, rss0 / 1e9, rss1 / 1e9, (rss1 - rss0) / 1e9);
    }
    return 0;
  } catch (const dex::InputError& e) {
    std::fprintf(stderr, "dex-phantom: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-phantom: error: %s\n", e.what());
    return 1;
  }
}
