#include "engine/gpu_transformer.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/linear.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/rmsnorm.h"

namespace moeserve {
namespace {

constexpr int kBlockSize = 16;  // KV cache positions per block

// Owns every device allocation of a GpuTransformer; frees them at the end.
class DeviceArena {
 public:
  ~DeviceArena() {
    for (void* p : owned_) cudaFree(p);
  }
  template <typename T>
  absl::StatusOr<T*> Alloc(size_t n) {
    void* p = nullptr;
    MOE_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
    owned_.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  absl::StatusOr<T*> Upload(const std::vector<T>& v) {
    MOE_ASSIGN_OR_RETURN(T * p, Alloc<T>(v.size()));
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }

 private:
  std::vector<void*> owned_;
};

// A weight view as bf16 bits, appended to *out (bf16 checkpoints keep their
// bits; f32 and f16 are rounded to nearest even).
void AppendBf16(const TensorView& t, std::vector<uint16_t>* out) {
  const size_t n = static_cast<size_t>(t.numel());
  const size_t base = out->size();
  out->resize(base + n);
  uint16_t* dst = out->data() + base;
  if (t.dtype == DType::kBF16) {
    std::memcpy(dst, t.data, n * 2);
    return;
  }
  std::vector<float> f(n);
  ConvertToFloat(t.dtype, t.data, n, f.data());
  for (size_t i = 0; i < n; ++i) dst[i] = FloatToBF16(f[i]);
}

std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToBF16(v[i]);
  return out;
}

}  // namespace

struct GpuTransformer::Impl {
  struct Layer {
    float *input_norm, *post_norm, *q_norm = nullptr, *k_norm = nullptr;
    uint16_t *q, *k, *v, *o;  // packed
    uint16_t *router, *gate_up, *down;
    uint16_t *k_pool, *v_pool;
  };
  ModelConfig c;
  int max_positions = 0, max_blocks = 0;
  DeviceArena arena;
  std::vector<Layer> layers;
  uint16_t *embed, *lm_head;
  float* final_norm;
  double* inv_freq;
  int32_t* block_table;
  // Scratch for up to max_positions tokens.
  int32_t *ids, *positions, *slots, *query_start;
  float *h, *q, *k, *v, *qn, *kn, *attn, *proj, *logits, *router_logits, *route_w, *y;
  uint16_t *xb, *hh;
  int32_t *route_ids, *offsets, *active, *active_count, *row_token, *pair_row;
};

GpuTransformer::GpuTransformer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuTransformer::~GpuTransformer() = default;

absl::StatusOr<std::unique_ptr<GpuTransformer>> GpuTransformer::Create(const ModelWeights& w,
                                                                      int max_positions) {
  const ModelConfig& c = w.config;
  MOE_ASSIGN_OR_RETURN(int devices, cuda::DeviceCount());
  if (devices == 0) return absl::FailedPreconditionError("no CUDA device on this machine");
  // What the kernels and this first GPU forward pass cover.
  const int q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  if (c.qkv_bias || c.o_bias) return absl::UnimplementedError("GPU: attention biases");
  if (c.clip_qkv) return absl::UnimplementedError("GPU: clip_qkv");
  if (c.shared_expert_intermediate_size > 0) {
    return absl::UnimplementedError("GPU: the shared expert (Qwen2-MoE)");
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (!w.layers[l].is_moe) return absl::UnimplementedError(absl::StrCat("GPU: dense layer ", l));
  }
  if (w.expert_begin != 0 || w.expert_end != c.num_experts) {
    return absl::UnimplementedError("GPU: an expert slice (needs every expert)");
  }
  if (c.hidden_size % 16 != 0 || q_dim % 16 != 0 || c.moe_intermediate_size % 16 != 0 ||
      (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256)) {
    return absl::UnimplementedError(absl::StrCat(
        "GPU: shapes the kernels cannot take (hidden ", c.hidden_size, ", heads x head_dim ",
        q_dim, ", expert width ", c.moe_intermediate_size, ", head_dim ", c.head_dim,
        "; need multiples of 16 and head_dim 64/128/256)"));
  }
  if (max_positions <= 0) return absl::InvalidArgumentError("max_positions must be positive");

  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.c = c;
  m.max_positions = max_positions;
  m.max_blocks = (max_positions + kBlockSize - 1) / kBlockSize;
  DeviceArena& a = m.arena;
  const int H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size;

  // A matrix [out, in] into packed fragment order.
  auto pack_linear = [&](const TensorView& t, int out, int in) -> absl::StatusOr<uint16_t*> {
    std::vector<uint16_t> bits;
    AppendBf16(t, &bits);
    MOE_ASSIGN_OR_RETURN(uint16_t * raw, a.Upload(bits));
    MOE_ASSIGN_OR_RETURN(uint16_t * packed, a.Alloc<uint16_t>(cuda::LinearPackedSize(out, in)));
    MOE_CUDA_RETURN_IF_ERROR(cuda::PackLinearWeight(raw, out, in, packed, nullptr));
    return packed;
  };
  m.layers.resize(c.num_layers);
  const size_t pool = static_cast<size_t>(m.max_blocks) * kBlockSize * kv_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    Impl::Layer& d = m.layers[l];
    MOE_ASSIGN_OR_RETURN(d.input_norm, a.Upload(lw.input_norm));
    MOE_ASSIGN_OR_RETURN(d.post_norm, a.Upload(lw.post_attention_norm));
    if (c.qk_norm != QkNorm::kNone) {
      MOE_ASSIGN_OR_RETURN(d.q_norm, a.Upload(lw.q_norm));
      MOE_ASSIGN_OR_RETURN(d.k_norm, a.Upload(lw.k_norm));
    }
    MOE_ASSIGN_OR_RETURN(d.q, pack_linear(lw.q.weight, q_dim, H));
    MOE_ASSIGN_OR_RETURN(d.k, pack_linear(lw.k.weight, kv_dim, H));
    MOE_ASSIGN_OR_RETURN(d.v, pack_linear(lw.v.weight, kv_dim, H));
    MOE_ASSIGN_OR_RETURN(d.o, pack_linear(lw.o.weight, H, q_dim));
    MOE_ASSIGN_OR_RETURN(uint16_t * router_raw, a.Upload(ToBf16(lw.router)));
    MOE_ASSIGN_OR_RETURN(d.router, a.Alloc<uint16_t>(cuda::MoeRouterPackedSize(E, H)));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePackRouter(router_raw, E, H, d.router, nullptr));
    std::vector<uint16_t> gate, up, down;
    for (int e = 0; e < E; ++e) {
      AppendBf16(lw.experts[e].gate, &gate);
      AppendBf16(lw.experts[e].up, &up);
      AppendBf16(lw.experts[e].down, &down);
    }
    MOE_ASSIGN_OR_RETURN(uint16_t * gate_raw, a.Upload(gate));
    MOE_ASSIGN_OR_RETURN(uint16_t * up_raw, a.Upload(up));
    MOE_ASSIGN_OR_RETURN(uint16_t * down_raw, a.Upload(down));
    MOE_ASSIGN_OR_RETURN(d.gate_up, a.Alloc<uint16_t>(size_t{2} * E * I * H));
    MOE_ASSIGN_OR_RETURN(d.down, a.Alloc<uint16_t>(size_t{1} * E * H * I));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePackGateUp(gate_raw, up_raw, E, I, H, d.gate_up, nullptr));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePackDown(down_raw, E, H, I, d.down, nullptr));
    MOE_ASSIGN_OR_RETURN(d.k_pool, a.Alloc<uint16_t>(pool));
    MOE_ASSIGN_OR_RETURN(d.v_pool, a.Alloc<uint16_t>(pool));
  }
  {
    std::vector<uint16_t> embed;
    AppendBf16(w.embed, &embed);
    MOE_ASSIGN_OR_RETURN(m.embed, a.Upload(embed));
  }
  MOE_ASSIGN_OR_RETURN(m.lm_head, pack_linear(w.lm_head, c.vocab_size, H));
  MOE_ASSIGN_OR_RETURN(m.final_norm, a.Upload(w.final_norm));
  // The CPU engine's own table, so both rotate by the same angles.
  MOE_ASSIGN_OR_RETURN(m.inv_freq,
                       a.Upload(kernels::cpu::RopeTable(c.head_dim, c.rope_theta).inv_freq()));
  std::vector<int32_t> table(m.max_blocks);
  for (int b = 0; b < m.max_blocks; ++b) table[b] = b;
  MOE_ASSIGN_OR_RETURN(m.block_table, a.Upload(table));

  const size_t T = max_positions, K = c.top_k;
  MOE_ASSIGN_OR_RETURN(m.ids, a.Alloc<int32_t>(T));
  MOE_ASSIGN_OR_RETURN(m.positions, a.Alloc<int32_t>(T));
  MOE_ASSIGN_OR_RETURN(m.slots, a.Alloc<int32_t>(T));
  MOE_ASSIGN_OR_RETURN(m.query_start, a.Alloc<int32_t>(2));
  MOE_ASSIGN_OR_RETURN(m.h, a.Alloc<float>(T * H));
  MOE_ASSIGN_OR_RETURN(m.q, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.k, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.v, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.qn, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.kn, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.attn, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.proj, a.Alloc<float>(T * H));
  MOE_ASSIGN_OR_RETURN(m.logits, a.Alloc<float>(c.vocab_size));
  MOE_ASSIGN_OR_RETURN(m.router_logits, a.Alloc<float>(T * E));
  MOE_ASSIGN_OR_RETURN(m.route_w, a.Alloc<float>(T * K));
  MOE_ASSIGN_OR_RETURN(m.y, a.Alloc<float>(T * K * H));
  MOE_ASSIGN_OR_RETURN(m.xb, a.Alloc<uint16_t>(T * std::max(H, q_dim)));
  MOE_ASSIGN_OR_RETURN(m.hh, a.Alloc<uint16_t>(T * K * I));
  MOE_ASSIGN_OR_RETURN(m.route_ids, a.Alloc<int32_t>(T * K));
  MOE_ASSIGN_OR_RETURN(m.offsets, a.Alloc<int32_t>(E + 1));
  MOE_ASSIGN_OR_RETURN(m.active, a.Alloc<int32_t>(E));
  MOE_ASSIGN_OR_RETURN(m.active_count, a.Alloc<int32_t>(1));
  MOE_ASSIGN_OR_RETURN(m.row_token, a.Alloc<int32_t>(T * K));
  MOE_ASSIGN_OR_RETURN(m.pair_row, a.Alloc<int32_t>(T * K));
  MOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::unique_ptr<GpuTransformer>(new GpuTransformer(std::move(impl)));
}

absl::Status GpuTransformer::Forward(absl::Span<const int32_t> tokens, int start,
                                     std::vector<float>* logits) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const int n = static_cast<int>(tokens.size());
  if (n == 0 || start < 0 || start + n > m.max_positions) {
    return absl::InvalidArgumentError(absl::StrCat("positions [", start, ", ", start + n,
                                                   ") do not fit ", m.max_positions));
  }
  for (int32_t id : tokens) {
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  const int H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size, K = c.top_k;
  const int q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  std::vector<int32_t> pos(n), qs = {0, n};
  for (int i = 0; i < n; ++i) pos[i] = start + i;  // block table is the identity: slot = position
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(m.ids, tokens.data(), n * 4, cudaMemcpyHostToDevice));
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(m.positions, pos.data(), n * 4, cudaMemcpyHostToDevice));
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(m.slots, pos.data(), n * 4, cudaMemcpyHostToDevice));
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(m.query_start, qs.data(), 8, cudaMemcpyHostToDevice));

  cudaStream_t st = nullptr;
  const float eps = c.rms_norm_eps;
  MOE_CUDA_RETURN_IF_ERROR(cuda::EmbeddingGather(m.embed, c.vocab_size, H, m.ids, n, m.h, st));
  cuda::PagedAttentionShape shape;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.block_size = kBlockSize;
  shape.window = c.sliding_window.value_or(0);
  for (const Impl::Layer& d : m.layers) {
    MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(m.h, n, H, d.input_norm, eps, nullptr, m.xb, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, n, H, d.q, q_dim, m.q, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, n, H, d.k, kv_dim, m.k, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, n, H, d.v, kv_dim, m.v, st));
    // q and k as RoPE and attention read them: normed into qn / kn, or the
    // projections themselves.
    float* q = m.q;
    float* k = m.k;
    switch (c.qk_norm) {
      case QkNorm::kPerHead:
        MOE_CUDA_RETURN_IF_ERROR(
            cuda::RmsNorm(m.q, int64_t{n} * c.num_heads, c.head_dim, d.q_norm, eps, m.qn, st));
        MOE_CUDA_RETURN_IF_ERROR(
            cuda::RmsNorm(m.k, int64_t{n} * c.num_kv_heads, c.head_dim, d.k_norm, eps, m.kn, st));
        q = m.qn;
        k = m.kn;
        break;
      case QkNorm::kWholeProjection:
        MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNorm(m.q, n, q_dim, d.q_norm, eps, m.qn, st));
        MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNorm(m.k, n, kv_dim, d.k_norm, eps, m.kn, st));
        q = m.qn;
        k = m.kn;
        break;
      case QkNorm::kNone:
        break;
    }
    MOE_CUDA_RETURN_IF_ERROR(cuda::Rope(q, n, c.num_heads, c.head_dim, m.positions, m.inv_freq, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::Rope(k, n, c.num_kv_heads, c.head_dim, m.positions, m.inv_freq, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::AppendKv(k, m.v, n, kv_dim, m.slots, d.k_pool, d.v_pool, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::PagedAttention(shape, q, n, m.positions, m.query_start, 1,
                                                  m.block_table, m.max_blocks, d.k_pool,
                                                  d.v_pool, 1, nullptr, m.attn, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::FloatToBf16(m.attn, int64_t{n} * q_dim, m.xb, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, n, q_dim, d.o, H, m.proj, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(m.h, m.proj, int64_t{n} * H, st));

    MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(m.h, n, H, d.post_norm, eps, nullptr, m.xb, st));
    const int rows = n * K;
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeRouterLogits(m.xb, n, H, d.router, E, m.router_logits, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeTopK(m.router_logits, n, E, K, c.norm_topk_prob,
                                           m.route_ids, m.route_w, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePermute(m.route_ids, n, K, E, m.offsets, m.active,
                                              m.active_count, m.row_token, m.pair_row, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeGateUp(m.xb, H, I, d.gate_up, E, m.offsets, m.active,
                                             m.active_count, rows, m.row_token, m.hh, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeDown(m.hh, I, H, d.down, E, m.offsets, m.active,
                                           m.active_count, rows, m.y, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeCombine(m.y, m.route_ids, m.route_w, m.pair_row, n, K, H,
                                              m.proj, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(m.h, m.proj, int64_t{n} * H, st));
  }
  // The last token's logits.
  MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(m.h + static_cast<size_t>(n - 1) * H, 1, H,
                                               m.final_norm, eps, nullptr, m.xb, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, 1, H, m.lm_head, c.vocab_size, m.logits, st));
  logits->resize(c.vocab_size);
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(logits->data(), m.logits, sizeof(float) * c.vocab_size,
                                      cudaMemcpyDeviceToHost));
  MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace moeserve
