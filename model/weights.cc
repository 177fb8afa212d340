#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace moeserve {
namespace {

// Looks tensors up by name and checks shape and dtype, naming the file and
// tensor in every error.
class Resolver {
 public:
  explicit Resolver(const WeightSource& source) : source_(source) {}

  absl::StatusOr<TensorView> Matrix(const std::string& name, std::vector<int64_t> shape) {
    return Checked(name, shape);
  }

  absl::StatusOr<std::vector<float>> Vector(const std::string& name, std::vector<int64_t> shape) {
    MOE_ASSIGN_OR_RETURN(TensorView view, Checked(name, shape));
    std::vector<float> out(view.numel());
    ConvertToFloat(view.dtype, view.data, out.size(), out.data());
    return out;
  }

  bool Has(const std::string& name) const { return source_.Contains(name); }

 private:
  absl::StatusOr<TensorView> Checked(const std::string& name, const std::vector<int64_t>& shape) {
    auto view = source_.Get(name);
    if (!view.ok()) return view.status();
    if (!IsComputeDType(view->dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_.Location(name), ": tensor '", name, "' has dtype ",
                       DTypeName(view->dtype), "; only F32, BF16 and F16 are supported"));
    }
    if (view->shape != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_.Location(name), ": tensor '", name, "' has shape ",
                       ShapeString(view->shape), ", expected ", ShapeString(shape),
                       " from config.json"));
    }
    return view;
  }

  const WeightSource& source_;
};

absl::StatusOr<Linear> LoadLinear(Resolver& r, const std::string& prefix, int64_t out,
                                  int64_t in, bool bias) {
  Linear linear;
  MOE_ASSIGN_OR_RETURN(linear.weight, r.Matrix(prefix + ".weight", {out, in}));
  if (bias) {
    MOE_ASSIGN_OR_RETURN(linear.bias, r.Vector(prefix + ".bias", {out}));
  }
  return linear;
}

absl::StatusOr<FeedForward> LoadFeedForward(Resolver& r, const std::string& prefix,
                                            const char* gate, const char* up, const char* down,
                                            int64_t hidden, int64_t width) {
  FeedForward ffn;
  MOE_ASSIGN_OR_RETURN(ffn.gate, r.Matrix(absl::StrCat(prefix, ".", gate, ".weight"), {width, hidden}));
  MOE_ASSIGN_OR_RETURN(ffn.up, r.Matrix(absl::StrCat(prefix, ".", up, ".weight"), {width, hidden}));
  MOE_ASSIGN_OR_RETURN(ffn.down, r.Matrix(absl::StrCat(prefix, ".", down, ".weight"), {hidden, width}));
  return ffn;
}

absl::Status LoadExperts(Resolver& r, const ModelConfig& c, const std::string& block,
                         int begin, int end, LayerWeights* layer) {
  const int64_t h = c.hidden_size, f = c.moe_intermediate_size, e = c.num_experts;
  layer->experts.assign(e, FeedForward{});
  const std::string merged = block + ".experts.gate_up_proj";
  if (r.Has(merged)) {
    MOE_ASSIGN_OR_RETURN(TensorView gate_up, r.Matrix(merged, {e, 2 * f, h}));
    MOE_ASSIGN_OR_RETURN(TensorView down, r.Matrix(block + ".experts.down_proj", {e, h, f}));
    for (int j = begin; j < end; ++j) {
      TensorView both = gate_up.Index(j);
      layer->experts[j].gate = both.SliceRows(0, f);
      layer->experts[j].up = both.SliceRows(f, 2 * f);
      layer->experts[j].down = down.Index(j);
    }
    return absl::OkStatus();
  }
  const bool mixtral = c.arch == Architecture::kMixtral;
  for (int j = begin; j < end; ++j) {
    MOE_ASSIGN_OR_RETURN(
        layer->experts[j],
        LoadFeedForward(r, absl::StrCat(block, ".experts.", j), mixtral ? "w1" : "gate_proj",
                        mixtral ? "w3" : "up_proj", mixtral ? "w2" : "down_proj", h, f));
  }
  return absl::OkStatus();
}

absl::StatusOr<LayerWeights> LoadLayer(Resolver& r, const ModelConfig& c, int i, int begin,
                                       int end) {
  const std::string p = absl::StrCat("model.layers.", i);
  const int64_t h = c.hidden_size, d = c.head_dim;
  const int64_t q_out = c.num_heads * d, kv_out = c.num_kv_heads * d;
  LayerWeights layer;
  MOE_ASSIGN_OR_RETURN(layer.input_norm, r.Vector(p + ".input_layernorm.weight", {h}));
  MOE_ASSIGN_OR_RETURN(layer.post_attention_norm,
                       r.Vector(p + ".post_attention_layernorm.weight", {h}));
  const std::string a = p + ".self_attn";
  MOE_ASSIGN_OR_RETURN(layer.q, LoadLinear(r, a + ".q_proj", q_out, h, c.qkv_bias));
  MOE_ASSIGN_OR_RETURN(layer.k, LoadLinear(r, a + ".k_proj", kv_out, h, c.qkv_bias));
  MOE_ASSIGN_OR_RETURN(layer.v, LoadLinear(r, a + ".v_proj", kv_out, h, c.qkv_bias));
  MOE_ASSIGN_OR_RETURN(layer.o, LoadLinear(r, a + ".o_proj", h, q_out, c.o_bias));
  if (c.qk_norm == QkNorm::kPerHead) {
    MOE_ASSIGN_OR_RETURN(layer.q_norm, r.Vector(a + ".q_norm.weight", {d}));
    MOE_ASSIGN_OR_RETURN(layer.k_norm, r.Vector(a + ".k_norm.weight", {d}));
  } else if (c.qk_norm == QkNorm::kWholeProjection) {
    MOE_ASSIGN_OR_RETURN(layer.q_norm, r.Vector(a + ".q_norm.weight", {q_out}));
    MOE_ASSIGN_OR_RETURN(layer.k_norm, r.Vector(a + ".k_norm.weight", {kv_out}));
  }

  layer.is_moe = c.layer_is_moe[i];
  if (!layer.is_moe) {
    MOE_ASSIGN_OR_RETURN(layer.mlp, LoadFeedForward(r, p + ".mlp", "gate_proj", "up_proj",
                                                    "down_proj", h, c.intermediate_size));
    return layer;
  }
  // Mixtral's block is `block_sparse_moe` on the Hub; transformers v5 renames
  // it `mlp` when it merges the experts, so accept either.
  std::string block = absl::StrCat(p, ".", c.moe_block_name());
  if (!r.Has(block + ".gate.weight") && r.Has(p + ".mlp.gate.weight")) block = p + ".mlp";
  MOE_ASSIGN_OR_RETURN(layer.router, r.Vector(block + ".gate.weight", {c.num_experts, h}));
  MOE_RETURN_IF_ERROR(LoadExperts(r, c, block, begin, end, &layer));
  if (c.shared_expert_intermediate_size > 0) {
    MOE_ASSIGN_OR_RETURN(layer.shared_expert,
                         LoadFeedForward(r, block + ".shared_expert", "gate_proj", "up_proj",
                                         "down_proj", h, c.shared_expert_intermediate_size));
    MOE_ASSIGN_OR_RETURN(layer.shared_expert_gate,
                         r.Vector(block + ".shared_expert_gate.weight", {1, h}));
  }
  return layer;
}

// Reads one byte per page of every used tensor so the checkpoint is resident
// before serving; reports progress in bytes.
void Prefault(const std::vector<TensorView>& views,
              const std::function<void(uint64_t, uint64_t)>& progress) {
  uint64_t total = 0;
  for (const auto& v : views) total += v.nbytes();
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  uint64_t done = 0, reported = 0;
  volatile unsigned char sink = 0;
  for (const auto& v : views) {
    const auto* bytes = static_cast<const unsigned char*>(v.data);
    const uintptr_t start = reinterpret_cast<uintptr_t>(bytes) & ~(uintptr_t{page} - 1);
    ::madvise(reinterpret_cast<void*>(start), v.nbytes() + (reinterpret_cast<uintptr_t>(bytes) - start),
              MADV_WILLNEED);
    for (size_t off = 0; off < v.nbytes(); off += page) sink = sink + bytes[off];
    done += v.nbytes();
    if (progress && (done - reported >= (64u << 20) || done == total)) {
      progress(done, total);
      reported = done;
    }
  }
  (void)sink;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const ModelConfig& config,
                                                               std::unique_ptr<WeightSource> source,
                                                               const LoadOptions& options) {
  auto model = std::make_unique<ModelWeights>();
  model->config = config;
  model->expert_begin = options.expert_begin;
  model->expert_end = options.expert_end < 0 ? config.num_experts : options.expert_end;
  if (model->expert_begin < 0 || model->expert_begin > model->expert_end ||
      model->expert_end > config.num_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert range [", model->expert_begin, ", ", model->expert_end,
        ") is not within the model's ", config.num_experts, " experts"));
  }
  Resolver r(*source);
  const int64_t v = config.vocab_size, h = config.hidden_size;
  MOE_ASSIGN_OR_RETURN(model->embed, r.Matrix("model.embed_tokens.weight", {v, h}));
  MOE_ASSIGN_OR_RETURN(model->final_norm, r.Vector("model.norm.weight", {h}));
  if (config.tie_word_embeddings) {
    model->lm_head = model->embed;
  } else {
    MOE_ASSIGN_OR_RETURN(model->lm_head, r.Matrix("lm_head.weight", {v, h}));
  }
  for (int i = 0; i < config.num_layers; ++i) {
    MOE_ASSIGN_OR_RETURN(LayerWeights layer,
                         LoadLayer(r, config, i, model->expert_begin, model->expert_end));
    model->layers.push_back(std::move(layer));
  }
  // What this rank reads: merged expert tensors count only the local slice.
  std::vector<TensorView> used;
  used.push_back(model->embed);
  if (!config.tie_word_embeddings) used.push_back(model->lm_head);
  for (const auto& layer : model->layers) {
    for (const Linear* l : {&layer.q, &layer.k, &layer.v, &layer.o}) used.push_back(l->weight);
    for (const FeedForward* ffn : {&layer.mlp, &layer.shared_expert}) {
      if (!ffn->empty()) used.insert(used.end(), {ffn->gate, ffn->up, ffn->down});
    }
    for (const auto& e : layer.experts) {
      if (!e.empty()) used.insert(used.end(), {e.gate, e.up, e.down});
    }
  }
  for (const auto& view : used) model->resident_bytes += view.nbytes();
  if (options.prefault) Prefault(used, options.progress);
  model->source = std::move(source);
  return model;
}

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModel(const std::string& dir,
                                                        const LoadOptions& options) {
  MOE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> source, OpenSafetensorsDir(dir));
  return LoadModelWeights(config, std::move(source), options);
}

}  // namespace moeserve
