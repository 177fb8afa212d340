// ExpertRunner: the seam where an MoE layer's routed experts run.
//
// The Transformer routes each token (softmax, top-k) and hands the result to
// an ExpertRunner, which returns the weighted sum of the chosen experts'
// outputs. LocalExpertRunner runs them all in this process; the worker's
// expert-parallel runner (worker/expert_parallel.h) sends each token to the
// rank that owns its expert and back.
//
// Bit-exactness contract: for every token, out = 0, then for its chosen
// experts in ascending expert id, AccumulateScaled(out, weight, expert(h)).
// Any runner that keeps this order (and whose expert matmuls compute each
// row the same way) gives the single-process engine's bits.
#ifndef MOESERVE_ENGINE_EXPERT_RUNNER_H_
#define MOESERVE_ENGINE_EXPERT_RUNNER_H_

#include <cstdint>

#include "absl/status/status.h"

namespace moeserve {

class ExpertRunner {
 public:
  virtual ~ExpertRunner() = default;

  // h: [t, H] normed activations; ids, weights: [t, k] (the router's top-k
  // experts of each token and their weights). Writes out[t, H]. Called for
  // every MoE layer of every forward pass, also with t == 0 (an
  // expert-parallel rank with no tokens still serves its peers' tokens).
  virtual absl::Status Run(int layer, const float* h, int64_t t, const int32_t* ids,
                           const float* weights, float* out) = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_EXPERT_RUNNER_H_
