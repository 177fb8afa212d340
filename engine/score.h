// ScorePrompt: the log-probability a model gives each token of a text given
// the tokens before it — perplexity, and the prompt_logprobs of vLLM.
//
//   auto score = ScorePrompt(model, ids);
//   // score->token_logprobs[i] = log p(ids[i + 1] | ids[0..i]); perplexity()
//
// The prompt is prefilled in chunks of `chunk` tokens with logits at every
// position; each row is reduced to one log-softmax value in double before the
// next chunk, so memory stays at chunk × vocab floats however long the text.
#ifndef MOESERVE_ENGINE_SCORE_H_
#define MOESERVE_ENGINE_SCORE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/transformer.h"

namespace moeserve {

struct PromptScore {
  // log p(ids[i + 1] | ids[0..i]) for i in [0, ids.size() - 1): the first
  // token has no context and is not scored.
  std::vector<double> token_logprobs;
  double sum_logprob() const;
  // exp(-mean token_logprob); 1 when nothing was scored.
  double perplexity() const;
};

// INVALID_ARGUMENT when `ids` is empty, holds ids outside the vocabulary or is
// longer than the model's context (naming the numbers), or chunk < 1.
absl::StatusOr<PromptScore> ScorePrompt(Transformer& model, absl::Span<const int32_t> ids,
                                        int chunk = 256);

// log_softmax(row)[token], in double (max-shifted).
double LogSoftmaxAt(const float* row, int vocab, int32_t token);

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_SCORE_H_
