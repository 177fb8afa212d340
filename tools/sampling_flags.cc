#include "tools/sampling_flags.h"

namespace moeserve {

void AddSamplingFlags(FlagSet& flags, SamplingParams* p) {
  flags.Float("temperature", &p->temperature, "T", "Sampling temperature; 0 is greedy.");
  flags.Uint64("seed", &p->seed, "S", "Seed of the sampler (same seed, same output).");
  flags.Int("top-k", &p->top_k, "K", "Keep the K most likely tokens (0: off).");
  flags.Float("top-p", &p->top_p, "P",
              "Keep the most likely tokens until their probability reaches P (1: off).");
  flags.Float("min-p", &p->min_p, "P",
              "Drop tokens less likely than P times the most likely one (0: off).");
  flags.Float("repetition-penalty", &p->repetition_penalty, "R",
              "Penalty for tokens already in the prompt or output (1: off).");
  flags.Float("presence-penalty", &p->presence_penalty, "X",
              "Subtracted once for each token already in the output, in [-2, 2].");
  flags.Float("frequency-penalty", &p->frequency_penalty, "X",
              "Subtracted per occurrence in the output, in [-2, 2].");
  flags.Int("logprobs", &p->logprobs, "N",
            "Report each token's log-prob and the N most likely alternatives, in [0, 20] "
            "(raw: log-softmax of the model's logits; 0: off). Shown with --format json.");
}

nlohmann::json LogprobsJson(float logprob, const std::vector<std::pair<int32_t, float>>& top) {
  nlohmann::json entry;
  entry["logprob"] = logprob;
  nlohmann::json alternatives = nlohmann::json::array();
  for (const auto& [id, lp] : top) alternatives.push_back({id, lp});
  entry["top"] = std::move(alternatives);
  return entry;
}

}  // namespace moeserve
