#include "model/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace {

using Json = nlohmann::json;

// Typed, error-reporting access to config.json fields.
class Fields {
 public:
  Fields(const Json& root, absl::string_view file) : root_(root), file_(file) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": field '", field, "' ", what));
  }

  bool Has(const char* key) const {
    auto it = root_.find(key);
    return it != root_.end() && !it->is_null();
  }

  absl::StatusOr<int> Int(const char* key, std::optional<int> fallback = std::nullopt) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) {
      if (fallback) return *fallback;
      return Error(key, "is required");
    }
    if (!it->is_number_integer()) return Error(key, "must be an integer");
    const int64_t v = it->get<int64_t>();
    if (v < 0 || v > (1ll << 31) - 1) return Error(key, absl::StrCat("is out of range: ", v));
    return static_cast<int>(v);
  }

  absl::StatusOr<double> Number(const char* key, double fallback) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return fallback;
    if (!it->is_number()) return Error(key, "must be a number");
    return it->get<double>();
  }

  absl::StatusOr<bool> Bool(const char* key, bool fallback) const {
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return Error(key, "must be true or false");
    return it->get<bool>();
  }

  // An int or a list of ints (eos_token_id).
  absl::StatusOr<std::vector<int>> IntList(const char* key) const {
    std::vector<int> out;
    auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return out;
    if (it->is_number_integer()) {
      out.push_back(it->get<int>());
      return out;
    }
    if (!it->is_array()) return Error(key, "must be an integer or a list of integers");
    for (const Json& v : *it) {
      if (!v.is_number_integer()) return Error(key, "must be a list of integers");
      out.push_back(v.get<int>());
    }
    return out;
  }

  const Json* Find(const char* key) const {
    auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }

 private:
  const Json& root_;
  absl::string_view file_;
};

#define ASSIGN_FIELD(lhs, expr)          \
  do {                                   \
    auto moe_v_ = (expr);                \
    if (!moe_v_.ok()) return moe_v_.status(); \
    lhs = *moe_v_;                       \
  } while (0)

struct ArchInfo {
  const char* class_name;
  const char* model_type;
  Architecture arch;
};

constexpr ArchInfo kArchs[] = {
    {"MixtralForCausalLM", "mixtral", Architecture::kMixtral},
    {"Qwen2MoeForCausalLM", "qwen2_moe", Architecture::kQwen2Moe},
    {"Qwen3MoeForCausalLM", "qwen3_moe", Architecture::kQwen3Moe},
    {"OlmoeForCausalLM", "olmoe", Architecture::kOlmoe},
};

std::string SupportedList() {
  std::vector<std::string> names;
  for (const auto& a : kArchs) names.push_back(a.class_name);
  return absl::StrJoin(names, ", ");
}

// rope_theta lives at the top level in older configs and under
// rope_parameters in newer ones; only the default (unscaled) RoPE is
// implemented, anything else is refused rather than silently ignored.
absl::Status ParseRope(const Fields& f, absl::string_view file, double default_theta,
                       ModelConfig* c) {
  ASSIGN_FIELD(c->rope_theta, f.Number("rope_theta", default_theta));
  auto check_type = [&](const char* field, const Json& obj) -> absl::Status {
    std::string type = "default";
    for (const char* key : {"rope_type", "type"}) {
      auto it = obj.find(key);
      if (it != obj.end() && it->is_string()) type = it->get<std::string>();
    }
    if (type != "default") {
      return absl::UnimplementedError(absl::StrCat(
          file, ": field '", field, "' asks for RoPE type '", type,
          "'; only the default (unscaled) RoPE is supported"));
    }
    return absl::OkStatus();
  };
  if (const Json* params = f.Find("rope_parameters")) {
    if (!params->is_object()) return f.Error("rope_parameters", "must be an object");
    if (absl::Status s = check_type("rope_parameters", *params); !s.ok()) return s;
    auto it = params->find("rope_theta");
    if (it != params->end()) {
      if (!it->is_number()) return f.Error("rope_parameters.rope_theta", "must be a number");
      c->rope_theta = it->get<double>();
    }
  }
  if (const Json* scaling = f.Find("rope_scaling")) {
    if (!scaling->is_object()) return f.Error("rope_scaling", "must be an object or null");
    if (absl::Status s = check_type("rope_scaling", *scaling); !s.ok()) return s;
  }
  if (c->rope_theta <= 0) return f.Error("rope_theta", "must be positive");
  return absl::OkStatus();
}

absl::Status ParseMoe(const Fields& f, ModelConfig* c) {
  switch (c->arch) {
    case Architecture::kMixtral:
      ASSIGN_FIELD(c->num_experts, f.Int("num_local_experts"));
      ASSIGN_FIELD(c->moe_intermediate_size, f.Int("intermediate_size"));
      c->intermediate_size = c->moe_intermediate_size;
      c->norm_topk_prob = true;  // Mixtral always renormalises
      break;
    case Architecture::kOlmoe:
      ASSIGN_FIELD(c->num_experts, f.Int("num_experts"));
      ASSIGN_FIELD(c->moe_intermediate_size, f.Int("intermediate_size"));
      c->intermediate_size = c->moe_intermediate_size;
      ASSIGN_FIELD(c->norm_topk_prob, f.Bool("norm_topk_prob", false));
      break;
    case Architecture::kQwen2Moe:
    case Architecture::kQwen3Moe:
      ASSIGN_FIELD(c->num_experts, f.Int("num_experts"));
      ASSIGN_FIELD(c->moe_intermediate_size, f.Int("moe_intermediate_size"));
      ASSIGN_FIELD(c->intermediate_size, f.Int("intermediate_size"));
      ASSIGN_FIELD(c->norm_topk_prob, f.Bool("norm_topk_prob", false));
      break;
  }
  ASSIGN_FIELD(c->top_k, f.Int("num_experts_per_tok"));
  if (c->num_experts <= 0) return f.Error("num_experts", "must be positive");
  if (c->top_k <= 0 || c->top_k > c->num_experts) {
    return f.Error("num_experts_per_tok",
                   absl::StrCat("must be in [1, ", c->num_experts, "], got ", c->top_k));
  }
  if (c->moe_intermediate_size <= 0) return f.Error("moe_intermediate_size", "must be positive");

  c->layer_is_moe.assign(c->num_layers, true);
  if (c->arch == Architecture::kQwen2Moe || c->arch == Architecture::kQwen3Moe) {
    int step = 1;
    ASSIGN_FIELD(step, f.Int("decoder_sparse_step", 1));
    if (step <= 0) return f.Error("decoder_sparse_step", "must be positive");
    std::vector<int> mlp_only;
    ASSIGN_FIELD(mlp_only, f.IntList("mlp_only_layers"));
    for (int i = 0; i < c->num_layers; ++i) {
      c->layer_is_moe[i] = (i + 1) % step == 0;
    }
    for (int layer : mlp_only) {
      if (layer < 0 || layer >= c->num_layers) {
        return f.Error("mlp_only_layers",
                       absl::StrCat("names layer ", layer, " but the model has ",
                                    c->num_layers, " layers"));
      }
      c->layer_is_moe[layer] = false;
    }
    for (int i = 0; i < c->num_layers; ++i) {
      if (!c->layer_is_moe[i] && c->intermediate_size <= 0) {
        return f.Error("intermediate_size", "must be positive when there are dense layers");
      }
    }
  }
  if (c->arch == Architecture::kQwen2Moe) {
    ASSIGN_FIELD(c->shared_expert_intermediate_size,
                 f.Int("shared_expert_intermediate_size", 0));
  }
  return absl::OkStatus();
}

}  // namespace

int ModelConfig::num_moe_layers() const {
  int n = 0;
  for (bool moe : layer_is_moe) n += moe ? 1 : 0;
  return n;
}

absl::string_view ModelConfig::moe_block_name() const {
  return arch == Architecture::kMixtral ? "block_sparse_moe" : "mlp";
}

absl::string_view ArchitectureName(Architecture arch) {
  for (const auto& a : kArchs) {
    if (a.arch == arch) return a.class_name;
  }
  return "?";
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, absl::string_view file) {
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  }
  Fields f(root, file);
  ModelConfig c;

  // Architecture: `architectures[0]`, else `model_type`.
  const ArchInfo* info = nullptr;
  std::string asked;
  if (const Json* archs = f.Find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return f.Error("architectures", "must be a non-empty list of strings");
    }
    asked = (*archs)[0].get<std::string>();
    for (const auto& a : kArchs) {
      if (asked == a.class_name) info = &a;
    }
  } else if (const Json* type = f.Find("model_type"); type && type->is_string()) {
    asked = type->get<std::string>();
    for (const auto& a : kArchs) {
      if (asked == a.model_type) info = &a;
    }
  } else {
    return f.Error("architectures", "is missing (and there is no model_type)");
  }
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": unsupported architecture '", asked,
                                                   "'; supported: ", SupportedList()));
  }
  c.arch = info->arch;
  c.architecture_name = info->class_name;
  c.model_type = info->model_type;

  ASSIGN_FIELD(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_FIELD(c.hidden_size, f.Int("hidden_size"));
  ASSIGN_FIELD(c.num_layers, f.Int("num_hidden_layers"));
  ASSIGN_FIELD(c.num_heads, f.Int("num_attention_heads"));
  ASSIGN_FIELD(c.num_kv_heads, f.Int("num_key_value_heads", c.num_heads));
  for (auto [name, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                         {"num_hidden_layers", c.num_layers},
                         {"num_attention_heads", c.num_heads},
                         {"num_key_value_heads", c.num_kv_heads}}) {
    if (v <= 0) return f.Error(name, "must be positive");
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return f.Error("num_key_value_heads",
                   absl::StrCat("(", c.num_kv_heads, ") must divide num_attention_heads (",
                                c.num_heads, ")"));
  }
  ASSIGN_FIELD(c.head_dim, f.Int("head_dim", c.hidden_size / c.num_heads));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    return f.Error("head_dim", absl::StrCat("must be positive and even, got ", c.head_dim));
  }

  const bool mixtral_like = c.arch == Architecture::kMixtral || c.arch == Architecture::kOlmoe;
  double eps = 0;
  ASSIGN_FIELD(eps, f.Number("rms_norm_eps", mixtral_like ? 1e-5 : 1e-6));
  c.rms_norm_eps = static_cast<float>(eps);
  if (absl::Status s = ParseRope(f, file, c.arch == Architecture::kMixtral ? 1e6 : 1e4, &c);
      !s.ok()) {
    return s;
  }
  ASSIGN_FIELD(c.max_position_embeddings, f.Int("max_position_embeddings", 32768));
  ASSIGN_FIELD(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));

  switch (c.arch) {
    case Architecture::kMixtral:
      if (f.Has("sliding_window")) {
        int window = 0;
        ASSIGN_FIELD(window, f.Int("sliding_window"));
        if (window <= 0) return f.Error("sliding_window", "must be positive or null");
        c.sliding_window = window;
      }
      break;
    case Architecture::kQwen2Moe:
      // Older transformers hard-code q/k/v biases; newer ones read qkv_bias.
      ASSIGN_FIELD(c.qkv_bias, f.Bool("qkv_bias", true));
      break;
    case Architecture::kQwen3Moe:
      ASSIGN_FIELD(c.qkv_bias, f.Bool("attention_bias", false));
      c.o_bias = c.qkv_bias;
      c.qk_norm = QkNorm::kPerHead;
      break;
    case Architecture::kOlmoe: {
      ASSIGN_FIELD(c.qkv_bias, f.Bool("attention_bias", false));
      c.o_bias = c.qkv_bias;
      c.qk_norm = QkNorm::kWholeProjection;
      if (f.Has("clip_qkv")) {
        double clip = 0;
        ASSIGN_FIELD(clip, f.Number("clip_qkv", 0));
        if (clip <= 0) return f.Error("clip_qkv", "must be positive or null");
        c.clip_qkv = static_cast<float>(clip);
      }
      break;
    }
  }
  if (c.arch == Architecture::kQwen2Moe || c.arch == Architecture::kQwen3Moe) {
    bool sliding = false;
    ASSIGN_FIELD(sliding, f.Bool("use_sliding_window", false));
    if (sliding) {
      return absl::UnimplementedError(absl::StrCat(
          file, ": field 'use_sliding_window' is true; Qwen's per-layer sliding window "
                "attention is not supported"));
    }
  }
  if (absl::Status s = ParseMoe(f, &c); !s.ok()) return s;

  if (f.Has("bos_token_id")) {
    int bos = 0;
    ASSIGN_FIELD(bos, f.Int("bos_token_id"));
    c.bos_token_id = bos;
  }
  ASSIGN_FIELD(c.eos_token_ids, f.IntList("eos_token_id"));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseModelConfig(text.str(), path);
  if (!config.ok()) return config.status();

  const std::string gen_path = dir + "/generation_config.json";
  std::ifstream gen_in(gen_path, std::ios::binary);
  if (!gen_in) return config;  // optional file
  std::stringstream gen_text;
  gen_text << gen_in.rdbuf();
  Json gen = Json::parse(gen_text.str(), nullptr, /*allow_exceptions=*/false);
  if (gen.is_discarded() || !gen.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(gen_path, ": not a JSON object"));
  }
  std::vector<int> eos;
  ASSIGN_FIELD(eos, Fields(gen, gen_path).IntList("eos_token_id"));
  for (int id : eos) {
    if (std::find(config->eos_token_ids.begin(), config->eos_token_ids.end(), id) ==
        config->eos_token_ids.end()) {
      config->eos_token_ids.push_back(id);
    }
  }
  return config;
}

#undef ASSIGN_FIELD

}  // namespace moeserve
