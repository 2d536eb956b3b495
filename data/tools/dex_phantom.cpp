// dex-phantom: writes a synthetic spleen CT dataset in the Medical Segmentation Decathlon layout
// (imagesTr/, labelsTr/, imagesTs/, dataset.json).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "data/phantom.h"
#include "kernels/common.h"

namespace {

const char* kUsage =
    "usage: dex-phantom --out DIR --count N --seed S [--size small|full] [--test-count T]\n"
    "                   [--orientation mixed|lps|ras|als|spl] [--quiet]\n"
    "  Writes N training pairs (imagesTr/spleen_<i>.nii.gz int16 HU, labelsTr/spleen_<i>.nii.gz uint8, 1 = spleen),\n"
    "  T test images (imagesTs/) and dataset.json into DIR (created if missing; its parent must exist).\n"
    "  --size small: 64-96 voxels per axis (tests, CPU demo); full: 512 x 512 x 80-160 like MSD.\n"
    "  --orientation: storage of the arrays; mixed (default) cycles lps, ras, als, spl (als/spl permute axes).\n";

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
    int64_t count = -1, test_count = 0;
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
      else if (a == "--seed") { seed = static_cast<uint64_t>(parse_int(a, v, 0)); have_seed = true; }
      else if (a == "--size") {
        if (v == "small") opt.size = dex::PhantomSize::Small;
        else if (v == "full") opt.size = dex::PhantomSize::Full;
        else throw dex::InputError("--size expects small or full, got '" + v + "'");
      } else if (a == "--orientation") opt.orientation = dex::parse_phantom_orientation(v);
      else throw dex::InputError("unknown option " + a);
    }
    if (out.empty() || count < 0 || !have_seed) throw dex::InputError("--out, --count and --seed are required");
    const auto st = dex::write_phantom_dataset(out, count, seed, opt, test_count, !quiet);
    std::printf("wrote %lld training + %lld test phantoms (%.1f Mvoxels) to %s in %.2f s (generation %.2f s)\n",
                static_cast<long long>(count), static_cast<long long>(test_count), st.voxels / 1e6, out.c_str(),
                st.seconds, st.generate_seconds);
    return 0;
  } catch (const dex::InputError& e) {
    std::fprintf(stderr, "dex-phantom: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dex-phantom: error: %s\n", e.what());
    return 1;
  }
}
