// Device helpers for bf16 stored as uint16_t bit patterns (the checkpoint's
// own bits). Conversion to float is exact; to bf16 rounds to nearest even,
// as common/dtype.h does on the CPU.
#ifndef MOESERVE_KERNELS_CUDA_BF16_CUH_
#define MOESERVE_KERNELS_CUDA_BF16_CUH_

#include <cuda_bf16.h>

#include <cstdint>

namespace moeserve::cuda {

__device__ __forceinline__ float Bf16ToFloat(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

// The low and high bf16 of a 32-bit word (the lower address is the low half).
__device__ __forceinline__ float Bf16Lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float Bf16Hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ uint16_t FloatToBf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_BF16_CUH_
