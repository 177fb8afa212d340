#include "model/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

constexpr char kQwen3[] = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
  "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 6,
  "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
  "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
  "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 2,
  "mlp_only_layers": [5], "rms_norm_eps": 1e-6,
  "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
  "tie_word_embeddings": false, "eos_token_id": [151645, 151643], "bos_token_id": null
})";

TEST(ConfigTest, Qwen3MoeFields) {
  auto c = ParseModelConfig(kQwen3, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->arch, Architecture::kQwen3Moe);
  EXPECT_EQ(c->head_dim, 128);  // explicit, not 2048 / 32 = 64
  EXPECT_EQ(c->qk_norm, QkNorm::kPerHead);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_TRUE(c->norm_topk_prob);
  // decoder_sparse_step 2: layers 1, 3, 5 are sparse; 5 is in mlp_only_layers.
  EXPECT_EQ(c->layer_is_moe, (std::vector<bool>{false, true, false, true, false, false}));
  EXPECT_EQ(c->eos_token_ids, (std::vector<int>{151645, 151643}));
  EXPECT_FALSE(c->bos_token_id.has_value());
  EXPECT_EQ(c->moe_block_name(), "mlp");
}

TEST(ConfigTest, MixtralOlmoeQwen2Differences) {
  auto mixtral = ParseModelConfig(R"({"architectures": ["MixtralForCausalLM"],
      "vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 2,
      "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
      "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": null,
      "rope_theta": 1e6, "eos_token_id": 2, "bos_token_id": 1})",
                                  "config.json");
  ASSERT_TRUE(mixtral.ok()) << mixtral.status();
  EXPECT_EQ(mixtral->head_dim, 128);
  EXPECT_TRUE(mixtral->norm_topk_prob);
  EXPECT_EQ(mixtral->moe_intermediate_size, 14336);
  EXPECT_FALSE(mixtral->sliding_window.has_value());
  EXPECT_EQ(mixtral->moe_block_name(), "block_sparse_moe");
  EXPECT_EQ(mixtral->num_moe_layers(), 2);

  auto olmoe = ParseModelConfig(R"({"architectures": ["OlmoeForCausalLM"],
      "vocab_size": 50304, "hidden_size": 2048, "num_hidden_layers": 16,
      "num_attention_heads": 16, "intermediate_size": 1024, "num_experts": 64,
      "num_experts_per_tok": 8, "clip_qkv": 8.0, "rope_theta": 10000})",
                                "config.json");
  ASSERT_TRUE(olmoe.ok()) << olmoe.status();
  EXPECT_EQ(olmoe->qk_norm, QkNorm::kWholeProjection);
  EXPECT_FALSE(olmoe->norm_topk_prob);
  EXPECT_EQ(olmoe->clip_qkv, 8.0f);
  EXPECT_EQ(olmoe->num_kv_heads, 16);

  auto qwen2 = ParseModelConfig(R"({"architectures": ["Qwen2MoeForCausalLM"],
      "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 24,
      "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 5632,
      "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
      "num_experts": 60, "num_experts_per_tok": 4, "use_sliding_window": false})",
                                "config.json");
  ASSERT_TRUE(qwen2.ok()) << qwen2.status();
  EXPECT_TRUE(qwen2->qkv_bias);
  EXPECT_FALSE(qwen2->o_bias);
  EXPECT_EQ(qwen2->shared_expert_intermediate_size, 5632);
  EXPECT_EQ(qwen2->num_moe_layers(), 24);
}

TEST(ConfigTest, ClearErrors) {
  struct Case {
    const char* json;
    const char* expected;
  } cases[] = {
      {R"({"architectures": ["LlamaForCausalLM"]})",
       "unsupported architecture 'LlamaForCausalLM'; supported: MixtralForCausalLM"},
      {"{", "not a JSON object"},
      {R"({"architectures": ["MixtralForCausalLM"], "vocab_size": "many"})",
       "field 'vocab_size' must be an integer"},
      {R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2})",
       "field 'num_local_experts' is required"},
      {R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 3})",
       "field 'num_key_value_heads' (3) must divide num_attention_heads (2)"},
      {R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2,
          "rope_scaling": {"rope_type": "yarn", "factor": 4}})",
       "asks for RoPE type 'yarn'"},
      {R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 4,
          "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 5})",
       "field 'num_experts_per_tok' must be in [1, 4], got 5"},
      {R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 10, "hidden_size": 8,
          "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 4,
          "moe_intermediate_size": 4, "num_experts": 4, "num_experts_per_tok": 2,
          "mlp_only_layers": [7]})",
       "field 'mlp_only_layers' names layer 7 but the model has 2 layers"},
  };
  for (const auto& c : cases) {
    auto config = ParseModelConfig(c.json, "m/config.json");
    ASSERT_FALSE(config.ok()) << c.json;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.expected));
    EXPECT_THAT(std::string(config.status().message()), HasSubstr("m/config.json"));
  }
}

}  // namespace
}  // namespace moeserve
