// LocalExpertRunner: every expert in this process (the single-process
// engine). Needs weights that hold all experts.
#ifndef MOESERVE_ENGINE_LOCAL_EXPERT_RUNNER_H_
#define MOESERVE_ENGINE_LOCAL_EXPERT_RUNNER_H_

#include <vector>

#include "engine/expert_runner.h"
#include "model/weights.h"

namespace moeserve {

class LocalExpertRunner : public ExpertRunner {
 public:
  // `weights` must outlive the runner.
  explicit LocalExpertRunner(const ModelWeights& weights) : w_(weights) {}

  absl::Status Run(int layer, const float* h, int64_t t, const int32_t* ids,
                   const float* weights, float* out) override;

 private:
  const ModelWeights& w_;
  std::vector<std::vector<int32_t>> by_expert_;  // entries token * top_k + slot
  std::vector<float> gathered_, expert_out_, gate_, up_;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_LOCAL_EXPERT_RUNNER_H_
