#include "engine/generator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moeserve {

const char* FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

absl::Status CheckGenerateRequest(const ModelConfig& c, absl::Span<const int32_t> prompt,
                                  int max_tokens) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  for (int32_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 0, got ", max_tokens));
  }
  const int64_t needed = static_cast<int64_t>(prompt.size()) + max_tokens;
  if (needed > c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompt.size(), " tokens) plus max_tokens (", max_tokens, ") is ", needed,
        ", beyond the model's context of ", c.max_position_embeddings, " tokens"));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateResult> Generate(Transformer& model, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const std::function<void(int32_t)>& on_token) {
  const ModelConfig& c = model.config();
  MOE_RETURN_IF_ERROR(CheckGenerateRequest(c, prompt, options.max_tokens));
  MOE_RETURN_IF_ERROR(CheckSamplingParams(options.sampling));
  const int64_t needed = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  std::vector<int32_t> stops = options.stop_token_ids;
  if (!options.ignore_eos) stops.insert(stops.end(), c.eos_token_ids.begin(), c.eos_token_ids.end());

  GenerateResult result;
  result.prompt_tokens = static_cast<int>(prompt.size());
  if (options.max_tokens == 0) return result;

  KvCache cache = model.NewCache(static_cast<int>(needed));
  Sampler sampler(options.sampling);
  sampler.SetPrompt(prompt);
  std::vector<float> logits;
  const int chunk = std::max(1, options.prefill_chunk);
  for (size_t begin = 0; begin < prompt.size(); begin += chunk) {
    const size_t n = std::min<size_t>(chunk, prompt.size() - begin);
    SequenceChunk piece{prompt.subspan(begin, n), static_cast<int>(begin), &cache, false};
    logits.clear();
    MOE_RETURN_IF_ERROR(model.Forward({&piece, 1}, &logits));
  }
  int pos = static_cast<int>(prompt.size());
  while (true) {
    int32_t next;
    if (options.sampling.logprobs > 0) {
      SampleResult r = sampler.SampleWithLogprobs(logits.data(), c.vocab_size);
      next = r.token;
      result.logprobs.push_back(std::move(r));
    } else {
      next = sampler.Sample(logits.data(), c.vocab_size);
    }
    sampler.Accept(next);
    result.tokens.push_back(next);
    if (on_token) on_token(next);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
      result.finish_reason = FinishReason::kStop;
      return result;
    }
    if (static_cast<int>(result.tokens.size()) >= options.max_tokens) {
      result.finish_reason = FinishReason::kLength;
      return result;
    }
    SequenceChunk step{absl::MakeConstSpan(&result.tokens.back(), 1), pos++, &cache, false};
    logits.clear();
    MOE_RETURN_IF_ERROR(model.Forward({&step, 1}, &logits));
  }
}

}  // namespace moeserve
