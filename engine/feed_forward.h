// The pieces of an MoE block that every way of running experts shares, so
// the single-process engine and the expert-parallel one do the same float
// operations in the same order (and produce the same bits).
#ifndef MOESERVE_ENGINE_FEED_FORWARD_H_
#define MOESERVE_ENGINE_FEED_FORWARD_H_

#include <cstdint>
#include <vector>

#include "kernels/cpu/linear.h"
#include "model/weights.h"

namespace moeserve {

// A [rows, cols] weight view as the CPU kernels take it.
inline kernels::cpu::Weight AsWeight(const TensorView& t) {
  return {t.dtype, t.data, t.shape[0], t.shape[1]};
}

// out[n, H] = down(silu(gate(x)) * up(x)) for n rows of x[n, H]; gate and
// up are scratch.
void SwiGlu(const FeedForward& ffn, const float* x, int64_t n, std::vector<float>& gate,
            std::vector<float>& up, float* out);

// dst[j] += weight * src[j] for j < n. Out of line on purpose: every MoE
// combine goes through this one loop, so all of them round alike.
void AccumulateScaled(float* dst, float weight, const float* src, int64_t n);

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_FEED_FORWARD_H_
