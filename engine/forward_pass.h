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
//
// Sampling on the device (ForwardSampled, where samples_on_device()): the
// same forward pass, but the token of each logits row the engine marks
// kDevice is picked next to the logits (greedy, or plain temperature with
// the uniform draw the engine took from the request's own generator: the
// host Sampler's arithmetic, kernels/cuda/ops.h SampleFromLogits), and only
// the kHost rows' logits come back to the host, for the samplers that need
// them (penalties, truncation, log-probs). kSkip rows (a prefill chunk that
// is not the prompt's last) come back as neither.
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

// How the token of one logits row is picked (ForwardSampled).
struct RowSampling {
  enum Where : uint8_t { kSkip, kDevice, kHost };
  Where where = kSkip;
  float temperature = 0.0f;  // kDevice: <= 0 greedy
  double uniform = 0.0;      // kDevice with temperature > 0: the draw, [0, 1)
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

  // Whether ForwardSampled is implemented.
  virtual bool samples_on_device() const { return false; }
  // Forward with `rows[i]` saying how to pick the token of logits row i
  // (rows.size() must be the number of rows Forward would give). tokens[i]
  // gets the kDevice rows' tokens (-1 elsewhere); *host_logits points at the
  // kHost rows' logits, [kHost rows, vocab_size] in row order, valid until
  // the next call. Errors as Forward, and INVALID_ARGUMENT for a rows span
  // of the wrong size.
  virtual absl::Status ForwardSampled(absl::Span<const SequenceChunk> batch,
                                      absl::Span<const RowSampling> rows,
                                      std::vector<int32_t>* tokens,
                                      const float** host_logits) {
    return absl::UnimplementedError("this forward pass does not sample on a device");
  }
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_FORWARD_PASS_H_
