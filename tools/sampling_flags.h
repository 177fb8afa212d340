// The sampling flags shared by `moeserve run` and `moeserve generate`
// (engine/sampler.h SamplingParams; checked by CheckSamplingParams).
#ifndef MOESERVE_TOOLS_SAMPLING_FLAGS_H_
#define MOESERVE_TOOLS_SAMPLING_FLAGS_H_

#include "common/cli_flags.h"
#include "engine/sampler.h"

namespace moeserve {

// --temperature --seed --top-k --top-p --min-p --repetition-penalty
// --presence-penalty --frequency-penalty, writing into *params (whose
// current values are the defaults: off).
void AddSamplingFlags(FlagSet& flags, SamplingParams* params);

}  // namespace moeserve

#endif  // MOESERVE_TOOLS_SAMPLING_FLAGS_H_
