#include "kernels/backend.h"

#include <mutex>

namespace dex {

// Defined in kernels/backend_init.cpp, the only file compiled differently when CUDA is built.
void init_builtin_backends();

namespace {
struct Registry {
  Backend tables[2];
  bool present[2] = {false, false};
  std::string why_not[2] = {"the CPU backend did not register", "dex was built without CUDA (DEX_CUDA=OFF or no nvcc)"};
};
Registry& registry() {
  static Registry r;
  return r;
}
void ensure_init() {
  static std::once_flag once;
  std::call_once(once, [] { init_builtin_backends(); });
}
}  // namespace

void register_backend(const Backend& b) {
  auto& r = registry();
  r.tables[static_cast<int>(b.device)] = b;
  r.present[static_cast<int>(b.device)] = true;
}

void set_backend_unavailable_reason(Device d, const std::string& why) { registry().why_not[static_cast<int>(d)] = why; }

bool backend_available(Device d, std::string* why_not) {
  ensure_init();
  auto& r = registry();
  if (!r.present[static_cast<int>(d)] && why_not) *why_not = r.why_not[static_cast<int>(d)];
  return r.present[static_cast<int>(d)];
}

const Backend& backend(Device d) {
  std::string why;
  if (!backend_available(d, &why)) throw Error(str("backend ", device_name(d), " is not available: ", why));
  return registry().tables[static_cast<int>(d)];
}

}  // namespace dex
