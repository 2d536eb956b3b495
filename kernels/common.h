// dex runtime basics: errors and checks, dtype, device, host/device qualifiers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define DEX_HD __host__ __device__
#else
#define DEX_HD
#endif

namespace dex {

// Every error dex raises derives from dex::Error; library code throws, only main() exits.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Input a user can get wrong (files, configs, clicks, flags): the message is meant for that user.
class InputError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
[[noreturn]] void throw_check(const char* expr, const char* file, int line, const char* func, const std::string& msg);
}  // namespace detail

template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

}  // namespace dex

// DEX_CHECK(cond, msg...): host precondition; throws dex::Error with the expression, file, line, function.
#define DEX_CHECK(cond, ...)                                                                       \
  do {                                                                                            \
    if (!(cond)) ::dex::detail::throw_check(#cond, __FILE__, __LINE__, __func__, ::dex::str(__VA_ARGS__)); \
  } while (0)

// DEX_INPUT_CHECK(cond, msg...): a user-facing check; throws dex::InputError with just the message.
#define DEX_INPUT_CHECK(cond, ...)                                        \
  do {                                                                    \
    if (!(cond)) throw ::dex::InputError(::dex::str(__VA_ARGS__));        \
  } while (0)

namespace dex {

enum class DType : uint8_t { F32, F16, BF16, U8, I32 };
enum class Device : uint8_t { CPU, CUDA };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::U8: return 1;
    case DType::I32: return 4;
  }
  return 0;
}
const char* dtype_name(DType t);
const char* device_name(Device d);

// Gradient write mode (STYLE.md §8): parameter gradients accumulate, activation gradients overwrite
// except at fan-out points.
enum class GradMode : uint8_t { Overwrite, Accumulate };

}  // namespace dex
