// Element types of weight tensors and conversions between them.
//
// Safetensors names every dtype it can hold; moeserve computes with F32, BF16
// and F16 weights and rejects the others with a clear error where they are
// used. Conversions are exact (bf16/f16 -> f32) or round to nearest even
// (f32 -> bf16/f16), as PyTorch does.
#ifndef MOESERVE_COMMON_DTYPE_H_
#define MOESERVE_COMMON_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include "absl/strings/string_view.h"

namespace moeserve {

enum class DType {
  kF32,
  kBF16,
  kF16,
  // Read from safetensors headers but not computed with.
  kF64,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kU16,
  kU32,
  kU64,
  kBool,
  kF8E4M3,
  kF8E5M2,
};

// Bytes per element.
size_t DTypeSize(DType dtype);

// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
absl::string_view DTypeName(DType dtype);

// Parses a safetensors dtype string; nullopt when unknown.
std::optional<DType> ParseDType(absl::string_view name);

// True for the dtypes the engine computes with (F32, BF16, F16).
inline bool IsComputeDType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
}

inline float BF16ToFloat(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t FloatToBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float F16ToFloat(uint16_t bits);
uint16_t FloatToF16(float f);

// Converts n elements of `dtype` at `src` to float. dtype must be a compute
// dtype.
void ConvertToFloat(DType dtype, const void* src, size_t n, float* dst);

}  // namespace moeserve

#endif  // MOESERVE_COMMON_DTYPE_H_
