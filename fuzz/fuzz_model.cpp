// libFuzzer target over the model-file readers: the input bytes are written to a file and go through
// dex::fuzz::check_model_file (fuzz_checks.h: load_model, i.e. safetensors with dex metadata or a torch.save zip with
// its zip records, zip64, deflate, unpickler, storages and views; then the weights into the network the metadata
// describes). A clean dex::InputError or success is fine; anything else is a finding. Run: scripts/fuzz.sh model.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    const char* t = std::getenv("TMPDIR");
    return std::string(t ? t : "/tmp") + "/dex_fuzz_model_" + std::to_string(getpid()) + ".bin";
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dex::fuzz::check_model_file(path);
  } catch (const dex::InputError&) {
    // expected for bad input
  }
  std::remove(path.c_str());
  return 0;
}
