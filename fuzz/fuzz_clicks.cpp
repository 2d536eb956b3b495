// libFuzzer target over click files: dex::fuzz::check_clicks (fuzz_checks.h: parse, validate against a file shape,
// map onto the network grid through a reorientation and the bundle's resize factors). A clean dex::InputError or
// success is fine; anything else (a JSON library error that escaped, a click off the grid) is a finding.
// Run: scripts/fuzz.sh clicks.
#include <string>

#include "fuzz/fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    dex::fuzz::check_clicks(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const dex::InputError&) {
    // expected for bad input
  }
  return 0;
}
