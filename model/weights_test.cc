#include "model/weights.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

ModelConfig TinyConfig(const char* extra) {
  std::string json = std::string(R"({"architectures": ["Qwen3MoeForCausalLM"],
      "vocab_size": 11, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
      "num_key_value_heads": 1, "head_dim": 2, "intermediate_size": 6,
      "moe_intermediate_size": 3, "num_experts": 4, "num_experts_per_tok": 2)") +
                     extra + "}";
  auto c = ParseModelConfig(json, "config.json");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

void AddZeros(InMemoryWeightSource& s, const std::string& name, std::vector<int64_t> shape,
              DType dtype = DType::kF32) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  s.AddFloat(name, dtype, shape, std::vector<float>(n, 0.5f));
}

// All tensors of TinyConfig, with the experts merged or not.
std::unique_ptr<InMemoryWeightSource> TinySource(bool merged) {
  auto s = std::make_unique<InMemoryWeightSource>();
  AddZeros(*s, "model.embed_tokens.weight", {11, 4}, DType::kBF16);
  AddZeros(*s, "lm_head.weight", {11, 4});
  AddZeros(*s, "model.norm.weight", {4});
  const std::string p = "model.layers.0.";
  AddZeros(*s, p + "input_layernorm.weight", {4});
  AddZeros(*s, p + "post_attention_layernorm.weight", {4});
  AddZeros(*s, p + "self_attn.q_proj.weight", {4, 4});
  AddZeros(*s, p + "self_attn.k_proj.weight", {2, 4});
  AddZeros(*s, p + "self_attn.v_proj.weight", {2, 4});
  AddZeros(*s, p + "self_attn.o_proj.weight", {4, 4});
  AddZeros(*s, p + "self_attn.q_norm.weight", {2});
  AddZeros(*s, p + "self_attn.k_norm.weight", {2});
  AddZeros(*s, p + "mlp.gate.weight", {4, 4});
  if (merged) {
    std::vector<float> gate_up(4 * 6 * 4);
    for (size_t i = 0; i < gate_up.size(); ++i) gate_up[i] = static_cast<float>(i);
    s->AddFloat(p + "mlp.experts.gate_up_proj", DType::kF32, {4, 6, 4}, gate_up);
    AddZeros(*s, p + "mlp.experts.down_proj", {4, 4, 3});
  } else {
    for (int j = 0; j < 4; ++j) {
      const std::string e = p + "mlp.experts." + std::to_string(j) + ".";
      AddZeros(*s, e + "gate_proj.weight", {3, 4}, DType::kF16);
      AddZeros(*s, e + "up_proj.weight", {3, 4}, DType::kF16);
      AddZeros(*s, e + "down_proj.weight", {4, 3}, DType::kF16);
    }
  }
  return s;
}

TEST(WeightsTest, LoadsPerExpertLayoutAndOnlyTheLocalRange) {
  LoadOptions options;
  options.expert_begin = 1;
  options.expert_end = 3;
  auto model = LoadModelWeights(TinyConfig(""), TinySource(false), options);
  ASSERT_TRUE(model.ok()) << model.status();
  const LayerWeights& layer = (*model)->layers[0];
  ASSERT_EQ(layer.experts.size(), 4u);
  EXPECT_TRUE(layer.experts[0].empty());
  EXPECT_FALSE(layer.experts[1].empty());
  EXPECT_FALSE(layer.experts[2].empty());
  EXPECT_TRUE(layer.experts[3].empty());
  EXPECT_EQ(layer.experts[1].gate.dtype, DType::kF16);
  EXPECT_EQ(layer.router.size(), 16u);
}

TEST(WeightsTest, MergedExpertsAreViewsGateRowsFirst) {
  auto model = LoadModelWeights(TinyConfig(""), TinySource(true));
  ASSERT_TRUE(model.ok()) << model.status();
  const FeedForward& e2 = (*model)->layers[0].experts[2];
  ASSERT_EQ(e2.gate.shape, (std::vector<int64_t>{3, 4}));
  ASSERT_EQ(e2.up.shape, (std::vector<int64_t>{3, 4}));
  // Expert 2 starts at element 2 * 6 * 4 = 48; up starts 3 rows later.
  EXPECT_EQ(static_cast<const float*>(e2.gate.data)[0], 48.0f);
  EXPECT_EQ(static_cast<const float*>(e2.up.data)[0], 60.0f);
  EXPECT_EQ(e2.down.shape, (std::vector<int64_t>{4, 3}));
}

TEST(WeightsTest, TiedEmbeddingsNeedNoLmHead) {
  auto source = TinySource(false);
  auto model = LoadModelWeights(TinyConfig(R"(, "tie_word_embeddings": true)"),
                                std::move(source));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->lm_head.data, (*model)->embed.data);
}

TEST(WeightsTest, ErrorsNameTensorShapeAndDtype) {
  auto wrong_shape = TinySource(false);
  AddZeros(*wrong_shape, "model.layers.0.self_attn.k_proj.weight", {3, 4});
  auto s1 = LoadModelWeights(TinyConfig(""), std::move(wrong_shape)).status();
  EXPECT_THAT(std::string(s1.message()),
              HasSubstr("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [3, 4], "
                        "expected [2, 4]"));

  auto wrong_dtype = TinySource(false);
  wrong_dtype->Add("model.norm.weight", DType::kI8, {4}, std::string(4, '\0'));
  auto s2 = LoadModelWeights(TinyConfig(""), std::move(wrong_dtype)).status();
  EXPECT_THAT(std::string(s2.message()),
              HasSubstr("tensor 'model.norm.weight' has dtype I8; only F32, BF16 and F16"));

  auto s3 = LoadModelWeights(TinyConfig(R"(, "attention_bias": true)"), TinySource(false))
                .status();
  EXPECT_EQ(s3.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s3.message()),
              HasSubstr("tensor 'model.layers.0.self_attn.q_proj.bias' not found"));

  LoadOptions bad_range;
  bad_range.expert_end = 9;
  auto s4 = LoadModelWeights(TinyConfig(""), TinySource(false), bad_range).status();
  EXPECT_THAT(std::string(s4.message()), HasSubstr("expert range [0, 9)"));
}

}  // namespace
}  // namespace moeserve
