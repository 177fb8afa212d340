// Transformer: the forward pass of a Mixture-of-Experts decoder on the CPU
// (a ForwardPass, engine/forward_pass.h).
//
//   Transformer model(weights);
//   KvCache cache = model.NewCache(capacity);
//   std::vector<float> logits;
//   SequenceChunk chunk{prompt, /*start=*/0, &cache, /*all_logits=*/false};
//   MOE_RETURN_IF_ERROR(model.Forward({&chunk, 1}, &logits));  // [1, vocab]
//
// One call runs a batch of chunks, each a run of consecutive tokens of one
// sequence starting at `start` (a prefill chunk, or one decode token). All
// tokens of the batch go through every matmul together; attention reads each
// chunk's own cache. Per layer:
//   x += o(attn(rope(qk_norm(q(norm(x)))), rope(qk_norm(k(..))), v(..)))
//   x += moe(norm(x)) | mlp(norm(x))
// with the MoE block as HF computes it: router softmax over all experts, top-k
// (renormalised per config), SwiGLU experts, weighted sum, plus the sigmoid-
// gated shared expert of Qwen2-MoE. Activations are float; weights are read in
// their stored dtype.
//
// The routed experts run through an ExpertRunner (engine/expert_runner.h):
// all in this process by default, or spread over an expert-parallel group.
// With a group, an empty batch is valid and still takes part in every MoE
// layer's exchange.
//
// Not thread-safe: one Forward at a time (it owns scratch buffers).
#ifndef MOESERVE_ENGINE_TRANSFORMER_H_
#define MOESERVE_ENGINE_TRANSFORMER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/expert_runner.h"
#include "engine/forward_pass.h"
#include "engine/kv_cache.h"
#include "kernels/cpu/rope.h"
#include "model/weights.h"

namespace moeserve {

class Transformer : public ForwardPass {
 public:
  // `weights` (and `experts`, when given) must outlive the Transformer.
  // Without `experts`, a LocalExpertRunner runs them (all must be loaded).
  explicit Transformer(const ModelWeights& weights, ExpertRunner* experts = nullptr);
  ~Transformer();

  const ModelConfig& config() const override { return w_.config; }
  KvCache NewCache(int capacity) const;

  // Appends to `logits` one row of vocab_size floats per requested position,
  // in batch order. INVALID_ARGUMENT for token ids outside the vocabulary or
  // chunks that do not fit their cache; the ExpertRunner's errors (e.g.
  // UNAVAILABLE when the group's collective fails).
  absl::Status Forward(absl::Span<const SequenceChunk> batch,
                       std::vector<float>* logits) override;

 private:
  struct Scratch;

  // Each adds its block's output to the residual stream s_->x.
  void Attention(int layer, absl::Span<const SequenceChunk> batch, int64_t tokens);
  absl::Status FeedForwardBlock(int layer, int64_t tokens);
  // The MoE block on the normed activations s_->h, into s_->out.
  absl::Status MoeBlock(int layer, int64_t tokens);

  const ModelWeights& w_;
  std::unique_ptr<ExpertRunner> own_experts_;  // when none was given
  ExpertRunner* experts_;
  kernels::cpu::RopeTable rope_;
  std::unique_ptr<Scratch> s_;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_TRANSFORMER_H_
