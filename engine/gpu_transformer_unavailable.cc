// GpuTransformer where the CUDA toolkit was not found at build time: Create
// says so, and nothing else can be reached (no instance is ever made).
#include "absl/status/status.h"
#include "engine/gpu_transformer.h"

namespace moeserve {

struct GpuTransformer::Impl {
  ModelConfig c;
};

GpuTransformer::GpuTransformer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuTransformer::~GpuTransformer() = default;

absl::StatusOr<std::unique_ptr<GpuTransformer>> GpuTransformer::Create(const ModelWeights&,
                                                                      const GpuOptions&) {
  return absl::FailedPreconditionError(
      "this moeserve was built without the CUDA toolkit: no GPU engine (use --device cpu)");
}

const ModelConfig& GpuTransformer::config() const { return impl_->c; }
absl::Status GpuTransformer::Forward(absl::Span<const SequenceChunk>, std::vector<float>*) {
  return absl::FailedPreconditionError("built without CUDA");
}
absl::Status GpuTransformer::ForwardSampled(absl::Span<const SequenceChunk>,
                                            absl::Span<const RowSampling>, std::vector<int32_t>*,
                                            const float**) {
  return absl::FailedPreconditionError("built without CUDA");
}
absl::Status GpuTransformer::set_collective(Collective*) {
  return absl::FailedPreconditionError("built without CUDA");
}
uint64_t GpuTransformer::graph_captures() const { return 0; }
uint64_t GpuTransformer::graph_launches() const { return 0; }
double GpuTransformer::all_to_all_seconds() const { return 0; }
uint64_t GpuTransformer::all_to_all_bytes() const { return 0; }
uint64_t GpuTransformer::expert_tokens(int) const { return 0; }
uint64_t GpuTransformer::weight_bytes() const { return 0; }
uint64_t GpuTransformer::kv_bytes() const { return 0; }

}  // namespace moeserve
