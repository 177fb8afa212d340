// ForwardPass: the seam between the serving engine (worker/engine.h) and the
// device that runs the model. Transformer (engine/transformer.h) runs it on
// the CPU; GpuTransformer (engine/gpu_transformer.h) on one GPU.
//
// Contract, for both:
//   - Forward runs a batch of chunks (a prefill chunk or one decode token per
//     sequence) and appends one row of vocab_size float logits per requested
//     position, in batch order (the last token of each chunk, or every token
//     with all_logits).
//   - Each chunk's KvCache names the blocks of the engine's KvBlockPool that
//     hold the sequence: the CPU reads and writes the pool's own storage; the
//     GPU keeps the storage on the device, block for block, and uses the
//     pool only for its block ids.
//   - With an expert-parallel group, every rank calls Forward once per step,
//     also with an empty batch, so that it takes part in every MoE layer's
//     exchange.
//   - Errors: INVALID_ARGUMENT for token ids outside the vocabulary or chunks
//     that do not fit their cache; UNAVAILABLE when the group's collective
//     failed; INTERNAL (with file and line) for a device error.
// Not thread-safe: one Forward at a time, from the engine thread.
#ifndef MOESERVE_ENGINE_FORWARD_PASS_H_
#define MOESERVE_ENGINE_FORWARD_PASS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "model/config.h"

namespace moeserve {

struct SequenceChunk {
  absl::Span<const int32_t> tokens;
  int start = 0;             // position of tokens[0]
  KvCache* cache = nullptr;  // must hold positions [0, start + tokens.size())
  bool all_logits = false;   // logits for every token, not only the last
};

class ForwardPass {
 public:
  virtual ~ForwardPass() = default;
  virtual const ModelConfig& config() const = 0;
  // Whether the KV values live in the KvBlockPool's host storage (false: on
  // a device, and the engine's pool needs no storage of its own).
  virtual bool kv_on_host() const { return true; }
  virtual absl::Status Forward(absl::Span<const SequenceChunk> batch,
                               std::vector<float>* logits) = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_FORWARD_PASS_H_
