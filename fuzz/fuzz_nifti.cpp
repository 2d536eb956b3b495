// libFuzzer target over the NIfTI reader: the input bytes are written to a file (named .nii.gz when they start with
// the gzip magic, else .nii) and read with dex::read_nifti / read_nifti_labels. A clean dex::InputError or success is
// fine; any other exception, a crash, a leak or a sanitizer report is a finding. Build and run: scripts/fuzz-nifti.sh.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/nifti_io.h"
#include "kernels/common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = [] {
    const char* t = std::getenv("TMPDIR");
    return std::string(t ? t : "/tmp") + "/dex_fuzz_nifti_" + std::to_string(getpid());
  }();
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string path = base + (gz ? ".nii.gz" : ".nii");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dex::NiftiMeta meta;
    dex::Volume v = dex::read_nifti(path, &meta);
    if (static_cast<int64_t>(v.data.size()) != v.size()) std::abort();
    try {
      dex::read_nifti_labels(path);
    } catch (const dex::InputError&) {
    }
  } catch (const dex::InputError&) {
    // expected for bad input
  }
  std::remove(path.c_str());
  return 0;
}
