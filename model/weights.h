// ModelWeights: a model's tensors resolved from a WeightSource by the
// Hugging Face naming rules of each architecture, with every shape and dtype
// checked against the config.
//
//   LoadOptions options;
//   options.progress = [](uint64_t done, uint64_t total) { ... };
//   auto model = LoadModel("/models/Qwen3-30B-A3B", options);
//
// Large matrices stay where the source keeps them (memory-mapped, in their
// stored dtype: F32, BF16 or F16) and are read through TensorViews; small
// vectors (norms, biases) are converted to float. Only the experts in
// [expert_begin, expert_end) are resolved and paged in, so an expert-parallel
// rank touches only its own slice of the checkpoint.
//
// Both expert layouts are understood: per-expert tensors
// (`experts.{j}.gate_proj.weight` / Mixtral's `w1,w3,w2`) and the merged
// `experts.gate_up_proj` [E, 2F, H] (gate rows first) + `experts.down_proj`
// [E, H, F] of newer transformers.
#ifndef MOESERVE_MODEL_WEIGHTS_H_
#define MOESERVE_MODEL_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/tensor.h"
#include "model/weight_source.h"

namespace moeserve {

// y = x W^T (+ b). weight is [out, in].
struct Linear {
  TensorView weight;
  std::vector<float> bias;  // empty: no bias
};

// down(silu(gate(x)) * up(x)); gate/up are [F, H], down is [H, F].
struct FeedForward {
  TensorView gate;
  TensorView up;
  TensorView down;
  bool empty() const { return gate.empty(); }
};

struct LayerWeights {
  std::vector<float> input_norm;           // [H]
  std::vector<float> post_attention_norm;  // [H]
  Linear q, k, v, o;
  std::vector<float> q_norm, k_norm;  // per QkNorm; empty when none

  bool is_moe = false;
  FeedForward mlp;  // dense layers
  // MoE layers.
  std::vector<float> router;          // [E, H] in float: routing is precision-sensitive
  std::vector<FeedForward> experts;   // size E; empty outside the local range
  FeedForward shared_expert;          // Qwen2-MoE
  std::vector<float> shared_expert_gate;  // [H]
};

struct ModelWeights {
  ModelConfig config;
  TensorView embed;    // [V, H]
  TensorView lm_head;  // [V, H]; the embedding when tied
  std::vector<float> final_norm;
  std::vector<LayerWeights> layers;
  int expert_begin = 0;
  int expert_end = 0;
  uint64_t resident_bytes = 0;  // bytes of the views this rank reads
  std::unique_ptr<WeightSource> source;  // owns the bytes the views point at
};

struct LoadOptions {
  // Local expert range; expert_end < 0 means all experts.
  int expert_begin = 0;
  int expert_end = -1;
  // Touch every page of the used tensors at load time (so the first request
  // does not pay for disk reads), reporting progress in bytes.
  bool prefault = true;
  std::function<void(uint64_t done, uint64_t total)> progress;
};

absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(
    const ModelConfig& config, std::unique_ptr<WeightSource> source,
    const LoadOptions& options = {});

// config.json + safetensors of a checkpoint directory.
absl::StatusOr<std::unique_ptr<ModelWeights>> LoadModel(const std::string& dir,
                                                        const LoadOptions& options = {});

}  // namespace moeserve

#endif  // MOESERVE_MODEL_WEIGHTS_H_
