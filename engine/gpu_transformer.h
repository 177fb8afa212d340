// GpuTransformer: the forward pass of engine/transformer.h on one GPU, from
// the CUDA kernels of kernels/cuda, as a ForwardPass (engine/forward_pass.h)
// the serving engine drives: batches of prefill chunks and decode tokens of
// many sequences, with the KV cache paged on the device.
//
//   GpuOptions o;
//   o.device = 0;  o.kv_blocks = n;  o.kv_block_size = 16;
//   MOE_ASSIGN_OR_RETURN(auto gpu, GpuTransformer::Create(weights, o));
//   Engine engine(*gpu, collective, options);   // options.kv_cache_blocks = n
//
// Weights are uploaded once at Create: every matrix as bf16 in the fragment
// order the GEMMs read (a bf16 checkpoint uploads its own bits; f32/f16 are
// rounded to bf16), norms as float. Activations are fp32 between kernels and
// rounded to bf16 where a GEMM reads them; the KV cache is bf16, in
// kv_blocks blocks of kv_block_size positions per layer, addressed by the
// block ids of the engine's KvBlockPool (which keeps no host copy).
//
// Per step: the token ids, positions, KV slots, block tables and sampling
// inputs go up in one copy from pinned memory. Forward brings back the
// logits of the requested rows. ForwardSampled (what the serving engine
// calls) picks greedy and plain-temperature tokens on the device
// (SampleFromLogits, the host Sampler's arithmetic, with the draw the engine
// took from the request's generator) and brings back only the tokens and
// the logits rows whose sampling needs the host (penalties, truncation,
// log-probs), through pinned buffers. One host synchronisation per step.
//
// CUDA graphs: without a collective, a sampled decode step (every chunk one
// token) runs as one graph launch: the upload, every layer, lm_head, the
// sampling and the tokens' copy back. Graphs are captured on first use, one
// per (batch rounded up to 1, 2, 4 or a multiple of 8; block-table width
// rounded up to a power of two), at most max_graphs kept (the least
// recently used is dropped). Padding rows are token 0 at position 0 in one
// spare KV block (the pool holds kv_blocks + 1); the tokens-per-expert
// counters count only the real rows. Prefill, mixed steps and steps with a
// collective (whose exchange waits on the host at every layer) launch
// kernel by kernel.
//
// Experts: with no collective, every expert is on this GPU and the MoE block
// never leaves it. With an expert-parallel group, this rank holds experts
// [rank_experts[rank], rank_experts[rank + 1]) and each MoE layer exchanges
// token rows (bf16) and results (fp32) with the other ranks, as
// worker/expert_parallel.h does on the CPU: permute the (token, expert)
// pairs by expert on the device, all-to-all the counts, all-to-all-v the
// expert ids and rows, run the local experts as grouped GEMMs, all-to-all-v
// the results back, combine in ascending expert id. An NCCL collective
// (memory() kDevice) moves device buffers directly; a host collective (Gloo,
// local) is staged through host memory. Every rank calls Forward each step,
// an empty batch included.
//
// Refused with UNIMPLEMENTED, naming the feature: attention biases,
// clip_qkv, the shared expert, dense (non-MoE) layers, and shapes the
// kernels cannot take (hidden, heads x head_dim and expert width multiples
// of 16; head_dim 64, 128 or 256). Every CUDA error becomes a status with
// the file and line of the call (kernels/cuda/cuda_status.h).
//
// Built only with the CUDA toolkit; elsewhere Create answers
// FAILED_PRECONDITION (gpu_transformer_unavailable.cc).
#ifndef MOESERVE_ENGINE_GPU_TRANSFORMER_H_
#define MOESERVE_ENGINE_GPU_TRANSFORMER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "collective/collective.h"
#include "engine/expert_traffic.h"
#include "engine/forward_pass.h"
#include "model/weights.h"

namespace moeserve {

struct GpuOptions {
  int device = 0;                // CUDA device index
  int max_batch_tokens = 2048;   // tokens of one Forward, every chunk together
  int max_batch_seqs = 256;      // chunks of one Forward
  int kv_blocks = 1024;          // the device KV pool, per layer
  int kv_block_size = 16;        // positions per block
  bool cuda_graphs = true;       // false: every step eager (vLLM's --enforce-eager)
  int max_graphs = 64;           // captured decode graphs kept
  // The expert-parallel group, or null when `weights` holds every expert.
  // Every rank must use the same max_batch_tokens.
  Collective* collective = nullptr;
  // With a collective: world_size + 1 ascending bounds; rank r holds experts
  // [rank_experts[r], rank_experts[r + 1]), and `weights` exactly this
  // rank's.
  std::vector<int> rank_experts;
};

class GpuTransformer : public ForwardPass, public ExpertTraffic {
 public:
  // `weights` may be freed after Create; the collective must outlive this.
  static absl::StatusOr<std::unique_ptr<GpuTransformer>> Create(const ModelWeights& weights,
                                                                const GpuOptions& options);
  ~GpuTransformer() override;
  GpuTransformer(const GpuTransformer&) = delete;
  GpuTransformer& operator=(const GpuTransformer&) = delete;

  // ForwardPass. Besides its errors: INVALID_ARGUMENT when the batch has
  // more tokens or chunks than the options allow, or a cache whose block
  // size or block ids do not fit the device pool.
  const ModelConfig& config() const override;
  bool kv_on_host() const override { return false; }
  absl::Status Forward(absl::Span<const SequenceChunk> batch,
                       std::vector<float>* logits) override;
  // ForwardPass::ForwardSampled; also INVALID_ARGUMENT for an all_logits
  // chunk (one row per chunk).
  bool samples_on_device() const override { return true; }
  absl::Status ForwardSampled(absl::Span<const SequenceChunk> batch,
                              absl::Span<const RowSampling> rows, std::vector<int32_t>* tokens,
                              const float** host_logits) override;

  // The expert-parallel group after it re-formed (a new epoch): the same
  // rank and world size as the one given at Create, which must have had
  // one. INVALID_ARGUMENT otherwise.
  absl::Status set_collective(Collective* collective);

  // Decode graphs captured and launched so far.
  uint64_t graph_captures() const;
  uint64_t graph_launches() const;

  // ExpertTraffic (zero bytes and seconds without a collective).
  double all_to_all_seconds() const override;
  uint64_t all_to_all_bytes() const override;
  uint64_t expert_tokens(int expert) const override;

  // Device memory taken by the weights and by the KV pool.
  uint64_t weight_bytes() const;
  uint64_t kv_bytes() const;

  struct Impl;

 private:
  explicit GpuTransformer(std::unique_ptr<Impl> impl);
  // Forward (tokens null: every requested row's logits appended to *logits)
  // or ForwardSampled.
  absl::Status Step(absl::Span<const SequenceChunk> batch, absl::Span<const RowSampling> sampling,
                    std::vector<float>* logits, std::vector<int32_t>* tokens,
                    const float** host_logits);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_GPU_TRANSFORMER_H_
