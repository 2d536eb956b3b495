#include "kernels/common.h"

namespace dex {
namespace detail {
void throw_check(const char* expr, const char* file, int line, const char* func, const std::string& msg) {
  std::ostringstream os;
  os << "check failed: " << expr << " at " << file << ":" << line << " in " << func;
  if (!msg.empty()) os << ": " << msg;
  throw Error(os.str());
}
}  // namespace detail

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::U8: return "u8";
    case DType::I32: return "i32";
  }
  return "?";
}
const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }
}  // namespace dex
