#include "engine/score.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moeserve {

double PromptScore::sum_logprob() const {
  double s = 0;
  for (double lp : token_logprobs) s += lp;
  return s;
}

double PromptScore::perplexity() const {
  if (token_logprobs.empty()) return 1.0;
  return std::exp(-sum_logprob() / static_cast<double>(token_logprobs.size()));
}

double LogSoftmaxAt(const float* row, int vocab, int32_t token) {
  const float max = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return static_cast<double>(row[token]) - max - std::log(sum);
}

absl::StatusOr<PromptScore> ScorePrompt(Transformer& model, absl::Span<const int32_t> ids,
                                        int chunk) {
  const ModelConfig& config = model.config();
  if (ids.empty()) return absl::InvalidArgumentError("nothing to score: the text has no tokens");
  if (chunk < 1) return absl::InvalidArgumentError(absl::StrCat("chunk must be >= 1, got ", chunk));
  if (config.max_position_embeddings > 0 &&
      static_cast<int64_t>(ids.size()) > config.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("the text has ", ids.size(), " tokens, more than the model's context of ",
                     config.max_position_embeddings));
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", config.vocab_size, ")"));
    }
  }
  const int n = static_cast<int>(ids.size());
  KvCache cache = model.NewCache(n);
  PromptScore score;
  score.token_logprobs.reserve(n - 1);
  std::vector<float> logits;
  for (int start = 0; start < n - 1; start += chunk) {
    // Position p's logits predict ids[p + 1]; the last token predicts nothing.
    const int len = std::min(chunk, n - 1 - start);
    SequenceChunk piece{ids.subspan(start, len), start, &cache, /*all_logits=*/true};
    logits.clear();
    MOE_RETURN_IF_ERROR(model.Forward({&piece, 1}, &logits));
    for (int i = 0; i < len; ++i) {
      score.token_logprobs.push_back(LogSoftmaxAt(
          logits.data() + static_cast<size_t>(i) * config.vocab_size, config.vocab_size,
          ids[start + i + 1]));
    }
  }
  return score;
}

}  // namespace moeserve
