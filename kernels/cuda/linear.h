// Dense linear layers on the GPU's tensor cores: the attention projections
// and lm_head. CPU reference: kernels/cpu/linear.h Linear.
//
//   y[n, out] (fp32) = x[n, in] (bf16) · W[out, in]^T (bf16)
//
// bf16 products are exact in fp32 and summed in fp32 (in another order than
// the CPU: ~1e-6 relative). W is packed once at upload into the fragment
// order of moe.h's experts, padded with zero rows to a multiple of 16, so
// each warp reads it with one coalesced 16-byte load per lane per MMA.
// `in` must be a multiple of 16. Launchers take device pointers and a
// stream, return the launch status and never synchronize.
#ifndef MOESERVE_KERNELS_CUDA_LINEAR_H_
#define MOESERVE_KERNELS_CUDA_LINEAR_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::cuda {

// Values in a packed [out, in] weight.
inline int64_t LinearPackedSize(int out_features, int in_features) {
  return int64_t{(out_features + 15) / 16} * 16 * in_features;
}

// w: [out, in] row-major bf16 (device) -> packed (LinearPackedSize values).
cudaError_t PackLinearWeight(const uint16_t* w, int out_features, int in_features,
                             uint16_t* packed, cudaStream_t stream);

// variant: 0 picks by shape. 1 and 3: split-K 8, one row tile per block (few
// output rows: projections); 2 and 4: split-K 4, four or two row tiles per
// block (many output rows: lm_head). 1 and 2 take 32 tokens a pass, 3 and 4
// take 64 (a pass reads the weights once). Every variant computes the same
// values up to the order of the fp32 sums.
inline constexpr int kLinearVariants = 4;
cudaError_t LinearBf16(const uint16_t* x, int64_t n, int in_features, const uint16_t* packed,
                       int out_features, float* y, cudaStream_t stream, int variant = 0);

// out[i] = bf16(x[i]) (round to nearest even): activations into a GEMM.
cudaError_t FloatToBf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream);

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_LINEAR_H_
