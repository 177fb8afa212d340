// ModelConfig: the parts of a Hugging Face config.json the engine needs,
// normalised across the supported MoE families.
//
//   auto config = LoadModelConfig("/models/Qwen3-30B-A3B");
//   if (!config.ok()) ...;  // message names config.json and the bad field
//
// Supported `architectures`: MixtralForCausalLM, Qwen2MoeForCausalLM,
// Qwen3MoeForCausalLM, OlmoeForCausalLM. Their differences (see
// docs ANCHORS.md) are resolved here into plain fields, so the forward pass
// branches on features (has_shared_expert, qk_norm, ...) and never on the
// family name.
#ifndef MOESERVE_MODEL_CONFIG_H_
#define MOESERVE_MODEL_CONFIG_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve {

enum class Architecture { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe };

enum class QkNorm {
  kNone,
  kPerHead,          // Qwen3-MoE: RMSNorm over head_dim, weight [head_dim]
  kWholeProjection,  // OLMoE: RMSNorm over the q (k) projection, weight [heads*head_dim]
};

struct ModelConfig {
  Architecture arch = Architecture::kQwen3Moe;
  std::string architecture_name;  // as in config.json, e.g. "Qwen3MoeForCausalLM"
  std::string model_type;         // "qwen3_moe"

  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  int max_position_embeddings = 0;
  std::optional<int> sliding_window;  // attend to at most this many keys (incl. self)
  bool tie_word_embeddings = false;

  // Attention extras.
  bool qkv_bias = false;  // biases on q, k, v projections
  bool o_bias = false;    // bias on the output projection
  QkNorm qk_norm = QkNorm::kNone;
  std::optional<float> clip_qkv;  // OLMoE: clamp q, k, v to [-c, c]

  // MLP / MoE.
  int intermediate_size = 0;      // dense MLP width (dense layers)
  int moe_intermediate_size = 0;  // width of each routed expert
  int num_experts = 0;
  int top_k = 0;
  bool norm_topk_prob = false;    // renormalise the top-k weights to sum to 1
  std::vector<bool> layer_is_moe;  // per layer
  int shared_expert_intermediate_size = 0;  // > 0: Qwen2-MoE shared expert + sigmoid gate

  std::optional<int> bos_token_id;
  // config.json's eos_token_id, plus generation_config.json's when
  // LoadModelConfig finds one (what HF generate stops on).
  std::vector<int> eos_token_ids;

  int num_moe_layers() const;
  // Tensor-name prefix of the MoE block: "mlp" or "block_sparse_moe" (Mixtral).
  absl::string_view moe_block_name() const;
};

// Parses config.json text; `file` names it in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, absl::string_view file);

// Reads DIR/config.json, and DIR/generation_config.json when present.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

absl::string_view ArchitectureName(Architecture arch);

}  // namespace moeserve

#endif  // MOESERVE_MODEL_CONFIG_H_
