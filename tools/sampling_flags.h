// The sampling flags shared by `moeserve run` and `moeserve generate`
// (engine/sampler.h SamplingParams; checked by CheckSamplingParams).
#ifndef MOESERVE_TOOLS_SAMPLING_FLAGS_H_
#define MOESERVE_TOOLS_SAMPLING_FLAGS_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "common/cli_flags.h"
#include "engine/sampler.h"
#include "nlohmann/json.hpp"

namespace moeserve {

// --temperature --seed --top-k --top-p --min-p --repetition-penalty
// --presence-penalty --frequency-penalty --logprobs, writing into *params (whose
// current values are the defaults: off).
void AddSamplingFlags(FlagSet& flags, SamplingParams* params);

// One token's entry of the "logprobs" array that `run` and `generate` print
// with --format json: {"logprob": x, "top": [[id, logprob], ...]}. Both pass
// floats (the precision the cluster sends), so both print the same.
nlohmann::json LogprobsJson(float logprob, const std::vector<std::pair<int32_t, float>>& top);

}  // namespace moeserve

#endif  // MOESERVE_TOOLS_SAMPLING_FLAGS_H_
