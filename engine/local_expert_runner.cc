#include "engine/local_expert_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/feed_forward.h"

namespace moeserve {

absl::Status LocalExpertRunner::Run(int layer, const float* h, int64_t t, const int32_t* ids,
                                    const float* weights, float* out) {
  const ModelConfig& c = w_.config;
  if (w_.expert_begin != 0 || w_.expert_end != c.num_experts) {
    return absl::FailedPreconditionError(absl::StrCat(
        "these weights hold experts [", w_.expert_begin, ", ", w_.expert_end,
        ") only; the single-process engine needs all ", c.num_experts));
  }
  const LayerWeights& lw = w_.layers[layer];
  const int64_t hidden = c.hidden_size;
  const int k = c.top_k;
  by_expert_.resize(c.num_experts);
  for (auto& list : by_expert_) list.clear();
  for (int64_t i = 0; i < t * k; ++i) by_expert_[ids[i]].push_back(static_cast<int32_t>(i));

  // Experts in ascending id, so each token accumulates in that order.
  std::fill_n(out, t * hidden, 0.0f);
  for (int e = 0; e < c.num_experts; ++e) {
    const auto& entries = by_expert_[e];
    if (entries.empty()) continue;
    const int64_t ne = static_cast<int64_t>(entries.size());
    gathered_.resize(ne * hidden);
    for (int64_t i = 0; i < ne; ++i) {
      std::copy_n(&h[(entries[i] / k) * hidden], hidden, &gathered_[i * hidden]);
    }
    expert_out_.resize(ne * hidden);
    SwiGlu(lw.experts[e], gathered_.data(), ne, gate_, up_, expert_out_.data());
    for (int64_t i = 0; i < ne; ++i) {
      AccumulateScaled(&out[(entries[i] / k) * hidden], weights[entries[i]],
                       &expert_out_[i * hidden], hidden);
    }
  }
  return absl::OkStatus();
}

}  // namespace moeserve
