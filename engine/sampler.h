// Sampler: picks the next token from logits.
//
// temperature == 0 is greedy (argmax; ties go to the lowest id, as
// torch.argmax). Otherwise a token is drawn from softmax(logits / T) with a
// per-request generator seeded by `seed`, so one request's draws do not
// depend on anything else the engine is doing. The generator is
// std::mt19937_64 and the uniform draw uses its top 53 bits, so results are
// the same on every platform.
#ifndef MOESERVE_ENGINE_SAMPLER_H_
#define MOESERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

namespace moeserve {

struct SamplingParams {
  float temperature = 0.0f;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  int32_t Sample(const float* logits, int vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<double> probs_;
};

int32_t Argmax(const float* logits, int vocab);

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_SAMPLER_H_
