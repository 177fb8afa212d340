#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace moeserve {

int32_t Argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

int32_t Sampler::Sample(const float* logits, int vocab) {
  if (params_.temperature <= 0.0f) return Argmax(logits, vocab);
  const double inv_t = 1.0 / params_.temperature;
  const float max = *std::max_element(logits, logits + vocab);
  probs_.resize(vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) {
    probs_[i] = std::exp((logits[i] - max) * inv_t);
    sum += probs_[i];
  }
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
  double acc = 0.0;
  for (int i = 0; i < vocab; ++i) {
    acc += probs_[i];
    if (u < acc) return i;
  }
  // Rounding left u at the very top: the last token with non-zero mass.
  for (int i = vocab - 1; i > 0; --i) {
    if (probs_[i] > 0.0) return i;
  }
  return 0;
}

}  // namespace moeserve
