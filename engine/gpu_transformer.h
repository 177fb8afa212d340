// The forward pass of engine/transformer.h on one GPU, from the CUDA kernels
// of kernels/cuda, for one sequence at a time (prefill, then decode steps).
// The reference it is tested against is the CPU Transformer on the same
// checkpoint (engine/gpu_transformer_test.cc).
//
// Weights are uploaded once at Create: every matrix as bf16 in the fragment
// order the GEMMs read (a bf16 checkpoint uploads its own bits; f32/f16 are
// rounded to bf16), norms as float. Activations are fp32 between kernels and
// rounded to bf16 where a GEMM reads them; the KV cache is bf16 in blocks of
// 16 positions.
//
// This is the first step of the GPU worker: one sequence, no CUDA graph, the
// families whose features the kernels cover (Qwen3-MoE, Mixtral; per-head or
// no q/k norm, MoE in every layer). Anything else is refused with
// UNIMPLEMENTED naming the feature, as are shapes the kernels cannot take
// (hidden, head widths and expert width multiples of 16; head_dim 64, 128
// or 256).
#ifndef MOESERVE_ENGINE_GPU_TRANSFORMER_H_
#define MOESERVE_ENGINE_GPU_TRANSFORMER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/weights.h"

namespace moeserve {

class GpuTransformer {
 public:
  // max_positions: the longest sequence (prompt and output) it will hold.
  static absl::StatusOr<std::unique_ptr<GpuTransformer>> Create(const ModelWeights& weights,
                                                                int max_positions);
  ~GpuTransformer();
  GpuTransformer(const GpuTransformer&) = delete;
  GpuTransformer& operator=(const GpuTransformer&) = delete;

  // Runs tokens at positions start, start+1, ... of the one sequence (its KV
  // cache must hold positions [0, start)) and writes the logits of the last
  // token ([vocab] floats) to *logits.
  absl::Status Forward(absl::Span<const int32_t> tokens, int start, std::vector<float>* logits);

  struct Impl;

 private:
  explicit GpuTransformer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_GPU_TRANSFORMER_H_
