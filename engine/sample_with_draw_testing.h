// For tests: engine/sampler.cc Sampler::Sample's arithmetic for greedy and
// plain temperature, given the uniform draw u instead of taking it from the
// request's generator. This is what kernels/cuda/ops.h SampleFromLogits
// mirrors on the device and what ForwardPass::ForwardSampled's device rows
// must give; kernels/cuda/ops_test checks it against Sampler itself.
//
// `near_boundary`: u * sum lies within 1e-12 * sum of a (non-zero)
// cumulative boundary of the chosen token, where another summation order
// (the GPU's prefix sum) may decide either way. The fallback counts as near:
// it only happens at the very top.
#ifndef MOESERVE_ENGINE_SAMPLE_WITH_DRAW_TESTING_H_
#define MOESERVE_ENGINE_SAMPLE_WITH_DRAW_TESTING_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/sampler.h"

namespace moeserve {

struct CpuDraw {
  int32_t token;
  bool near_boundary;
};

inline CpuDraw SampleWithDraw(const float* logits, int vocab, float temperature, double u) {
  if (temperature <= 0.0f) return {Argmax(logits, vocab), false};
  const double inv_t = 1.0 / temperature;
  const float max = *std::max_element(logits, logits + vocab);
  std::vector<double> probs(vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) {
    probs[i] = std::exp((logits[i] - max) * inv_t);
    sum += probs[i];
  }
  const double threshold = u * sum;
  const double margin = 1e-12 * sum;
  double acc = 0.0;
  for (int i = 0; i < vocab; ++i) {
    const double before = acc;
    acc += probs[i];
    if (threshold < acc) {
      return {i, (before > 0.0 && threshold - before <= margin) || acc - threshold <= margin};
    }
  }
  for (int i = vocab - 1; i > 0; --i) {
    if (probs[i] > 0.0) return {i, true};
  }
  return {0, true};
}

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_SAMPLE_WITH_DRAW_TESTING_H_
