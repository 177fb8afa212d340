#include "engine/feed_forward.h"

#include "kernels/cpu/activation.h"
#include "kernels/cpu/linear.h"

namespace moeserve {

namespace cpu = kernels::cpu;

void SwiGlu(const FeedForward& ffn, const float* x, int64_t n, std::vector<float>& gate,
            std::vector<float>& up, float* out) {
  const int64_t f = ffn.gate.shape[0];
  gate.resize(n * f);
  up.resize(n * f);
  cpu::Linear(x, n, AsWeight(ffn.gate), nullptr, gate.data());
  cpu::Linear(x, n, AsWeight(ffn.up), nullptr, up.data());
  cpu::SiluMul(gate.data(), up.data(), n * f, gate.data());
  cpu::Linear(gate.data(), n, AsWeight(ffn.down), nullptr, out);
}

void AccumulateScaled(float* dst, float weight, const float* src, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] += weight * src[j];
}

}  // namespace moeserve
