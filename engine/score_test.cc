// ScorePrompt against the float64 reference's logits at every prompt position
// (golden.safetensors' prompt_logits): each token's log-probability is the
// log-softmax of the reference row before it. Tolerance: the engine's logits
// are within 1e-4 × max|row| of the reference (golden_test.cc), and a
// log-softmax moves by at most twice a uniform bound on its inputs' error.
#include "engine/score.h"

#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace moeserve {
namespace {

struct Fixture {
  std::unique_ptr<ModelWeights> weights;
  std::vector<int32_t> prompt;
  std::vector<float> prompt_logits;
};

Fixture Load(const std::string& name) {
  Fixture f;
  const std::string dir = "tests/fixtures/" + name;
  auto w = LoadModel(dir);
  EXPECT_TRUE(w.ok()) << w.status();
  f.weights = std::move(*w);
  auto file = SafetensorsFile::Open(dir + "/golden.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  TensorView ids = (*file)->View(*(*file)->Find("prompt_ids"));
  const int32_t* p = static_cast<const int32_t*>(ids.data);
  f.prompt.assign(p, p + ids.numel());
  TensorView logits = (*file)->View(*(*file)->Find("prompt_logits"));
  const float* l = static_cast<const float*>(logits.data);
  f.prompt_logits.assign(l, l + logits.numel());
  return f;
}

class ScoreTest : public testing::TestWithParam<std::string> {};

TEST_P(ScoreTest, MatchesReferenceLogSoftmax) {
  Fixture f = Load(GetParam());
  const int vocab = f.weights->config.vocab_size;
  Transformer model(*f.weights);
  for (int chunk : {256, 5, 1}) {
    SCOPED_TRACE(testing::Message() << "chunk " << chunk);
    auto score = ScorePrompt(model, f.prompt, chunk);
    ASSERT_TRUE(score.ok()) << score.status();
    ASSERT_EQ(score->token_logprobs.size(), f.prompt.size() - 1);
    double ref_sum = 0;
    for (size_t i = 0; i + 1 < f.prompt.size(); ++i) {
      const float* row = f.prompt_logits.data() + i * vocab;
      double scale = 0;
      for (int j = 0; j < vocab; ++j) scale = std::max(scale, std::fabs(double{row[j]}));
      const double ref = LogSoftmaxAt(row, vocab, f.prompt[i + 1]);
      ref_sum += ref;
      EXPECT_NEAR(score->token_logprobs[i], ref, 2e-4 * scale + 1e-6) << "position " << i;
      EXPECT_LT(score->token_logprobs[i], 0.0);
    }
    EXPECT_NEAR(score->perplexity(), std::exp(-ref_sum / (f.prompt.size() - 1)),
                1e-3 * score->perplexity());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ScoreTest,
                         testing::Values("qwen3_moe_f32", "qwen3_moe_chat", "mixtral_bf16",
                                         "olmoe_f32", "qwen2_moe_f32"));

TEST(ScorePrompt, LogSoftmaxOfAKnownRow) {
  const float row[3] = {0.0f, std::log(2.0f), std::log(5.0f)};  // probabilities 1/8, 2/8, 5/8
  EXPECT_NEAR(LogSoftmaxAt(row, 3, 0), std::log(1.0 / 8), 1e-7);
  EXPECT_NEAR(LogSoftmaxAt(row, 3, 2), std::log(5.0 / 8), 1e-7);
  PromptScore s{{std::log(0.5), std::log(0.125)}};
  EXPECT_NEAR(s.perplexity(), 4.0, 1e-12);  // exp(-(ln 1/2 + ln 1/8) / 2) = sqrt(16)
  EXPECT_EQ(PromptScore{}.perplexity(), 1.0);
}

TEST(ScorePrompt, OneTokenScoresNothing) {
  Fixture f = Load("qwen3_moe_f32");
  Transformer model(*f.weights);
  auto score = ScorePrompt(model, {f.prompt[0]});
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_TRUE(score->token_logprobs.empty());
}

TEST(ScorePrompt, RejectsBadInput) {
  Fixture f = Load("qwen3_moe_f32");
  Transformer model(*f.weights);
  EXPECT_EQ(ScorePrompt(model, {}).status().code(), absl::StatusCode::kInvalidArgument);
  auto bad = ScorePrompt(model, {1, f.weights->config.vocab_size});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("outside the vocabulary"), std::string::npos);
  std::vector<int32_t> too_long(f.weights->config.max_position_embeddings + 1, 1);
  auto long_status = ScorePrompt(model, too_long).status();
  EXPECT_EQ(long_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(long_status.message().find("context"), std::string::npos) << long_status;
  EXPECT_EQ(ScorePrompt(model, f.prompt, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeserve
