// Generate: prompt in, tokens out, one sequence on a Transformer.
//
//   GenerateOptions options;
//   options.max_tokens = 64;
//   auto result = Generate(model, prompt_ids, options,
//                          [](int32_t id) { /* stream it */ });
//
// The prompt is prefilled in chunks, then tokens are decoded one at a time
// until max_tokens, or a stop token (the model's EOS ids unless ignore_eos,
// plus stop_token_ids). The stop token itself is returned as the last token
// and reported through on_token, as Hugging Face's generate does.
#ifndef MOESERVE_ENGINE_GENERATOR_H_
#define MOESERVE_ENGINE_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/sampler.h"
#include "engine/transformer.h"

namespace moeserve {

enum class FinishReason { kStop, kLength };
const char* FinishReasonName(FinishReason reason);  // "stop" | "length"

struct GenerateOptions {
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // in addition to the model's EOS
  bool ignore_eos = false;
  int prefill_chunk = 256;  // prompt tokens per forward pass
};

struct GenerateResult {
  int prompt_tokens = 0;
  std::vector<int32_t> tokens;
  // With sampling.logprobs >= 1: one per token, in order (the sampler's
  // SampleWithLogprobs results); else empty.
  std::vector<SampleResult> logprobs;
  FinishReason finish_reason = FinishReason::kLength;
};

// INVALID_ARGUMENT when the prompt is empty, has ids outside the vocabulary,
// max_tokens is negative, or prompt + max_tokens exceeds the model's context
// (the message gives both numbers). Shared by Generate and the worker's
// engine, so both refuse alike.
absl::Status CheckGenerateRequest(const ModelConfig& config, absl::Span<const int32_t> prompt,
                                  int max_tokens);

// Fails as CheckGenerateRequest does.
absl::StatusOr<GenerateResult> Generate(Transformer& model, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const std::function<void(int32_t)>& on_token = nullptr);

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_GENERATOR_H_
