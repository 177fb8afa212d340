#include "engine/gpu_transformer.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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

// Attention's split-KV workspace: enough for 128 splits of 16 decode rows of
// 64 heads of 128; larger batches need fewer splits (PagedAttentionNumSplits
// gives 1 once the batch fills the GPU), and the count is halved until it fits.
constexpr int64_t kAttentionWorkspaceFloats = int64_t{1} << 23;

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
    bytes_ += std::max<size_t>(n, 1) * sizeof(T);
    return static_cast<T*>(p);
  }
  template <typename T>
  absl::StatusOr<T*> Upload(const std::vector<T>& v) {
    MOE_ASSIGN_OR_RETURN(T * p, Alloc<T>(v.size()));
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }
  // Frees a buffer only needed while packing.
  void Free(void* p) {
    auto it = std::find(owned_.begin(), owned_.end(), p);
    if (it == owned_.end()) return;
    cudaFree(p);
    owned_.erase(it);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<void*> owned_;
  uint64_t bytes_ = 0;
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

absl::Status CheckSupported(const ModelWeights& w) {
  const ModelConfig& c = w.config;
  const int q_dim = c.num_heads * c.head_dim;
  if (c.qkv_bias || c.o_bias) return absl::UnimplementedError("GPU: attention biases");
  if (c.clip_qkv) return absl::UnimplementedError("GPU: clip_qkv");
  if (c.shared_expert_intermediate_size > 0) {
    return absl::UnimplementedError("GPU: the shared expert (Qwen2-MoE)");
  }
  for (int l = 0; l < c.num_layers; ++l) {
    if (!w.layers[l].is_moe) return absl::UnimplementedError(absl::StrCat("GPU: dense layer ", l));
  }
  if (c.hidden_size % 16 != 0 || q_dim % 16 != 0 || c.moe_intermediate_size % 16 != 0 ||
      (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256)) {
    return absl::UnimplementedError(absl::StrCat(
        "GPU: shapes the kernels cannot take (hidden ", c.hidden_size, ", heads x head_dim ",
        q_dim, ", expert width ", c.moe_intermediate_size, ", head_dim ", c.head_dim,
        "; need multiples of 16 and head_dim 64/128/256)"));
  }
  return absl::OkStatus();
}

}  // namespace

struct GpuTransformer::Impl {
  struct Layer {
    float *input_norm, *post_norm, *q_norm = nullptr, *k_norm = nullptr;
    uint16_t *q, *k, *v, *o;             // packed
    uint16_t *router, *gate_up, *down;   // packed; gate_up and down: local experts
    uint16_t *k_pool, *v_pool;
  };
  ModelConfig c;
  GpuOptions o;
  int rank = 0, world = 1;
  int expert_begin = 0, local_experts = 0;
  int max_blocks_per_seq = 0;  // the longest context, in blocks
  int num_sms = 1;
  DeviceArena arena;
  uint64_t weight_bytes = 0, kv_bytes = 0;
  std::vector<Layer> layers;
  uint16_t *embed, *lm_head;
  float* final_norm;
  double* inv_freq;

  // Per-step metadata, uploaded in one copy: ids, positions, slots [T];
  // query_start [S + 1]; logit_rows [T]; block tables [S, blocks] last.
  int32_t* meta;
  std::vector<int32_t> host_meta;
  // Activations for up to T tokens.
  float *h, *q, *k, *v, *qn, *kn, *attn, *proj, *attn_ws, *rows_h, *logits;
  uint16_t* xb;
  int logit_rows_cap = 0;
  // The MoE block: routing of T tokens, and expert rows (T * k locally, or
  // everything the group may send this rank).
  float *router_logits, *route_w, *y;
  uint16_t* hh;
  int32_t *route_ids, *offsets, *active, *active_count, *row_token, *pair_row;
  unsigned long long* expert_counts;  // [local experts] on the device
  // Expert parallelism.
  int64_t recv_cap = 0;  // rows
  std::vector<int64_t> bounds;  // rank_experts
  int32_t *expert_base, *send_ids, *recv_ids;
  uint16_t *send_h, *recv_h;
  int32_t *l_offsets, *l_active, *l_count, *l_row_token, *l_pair_row;
  float *results, *back;
  std::vector<int32_t> host_offsets;
  std::vector<int64_t> send_counts, recv_counts;
  std::vector<uint8_t> stage_send, stage_recv;  // host collectives

  // Statistics.
  std::atomic<int64_t> a2a_nanos{0};
  std::atomic<uint64_t> a2a_bytes{0};
  std::unique_ptr<std::atomic<uint64_t>[]> tokens_per_expert;  // [local experts]
  std::vector<unsigned long long> host_counts;

  absl::Status MoeLocal(const Layer& d, int n);
  absl::Status MoeExchange(const Layer& d, int n);
  absl::Status Exchange(const void* send, void* recv, size_t elem_bytes);
};

GpuTransformer::GpuTransformer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuTransformer::~GpuTransformer() = default;

const ModelConfig& GpuTransformer::config() const { return impl_->c; }
double GpuTransformer::all_to_all_seconds() const {
  return impl_->a2a_nanos.load(std::memory_order_relaxed) * 1e-9;
}
uint64_t GpuTransformer::all_to_all_bytes() const {
  return impl_->a2a_bytes.load(std::memory_order_relaxed);
}
uint64_t GpuTransformer::expert_tokens(int expert) const {
  const int local = expert - impl_->expert_begin;
  if (local < 0 || local >= impl_->local_experts) return 0;
  return impl_->tokens_per_expert[local].load(std::memory_order_relaxed);
}
uint64_t GpuTransformer::weight_bytes() const { return impl_->weight_bytes; }
uint64_t GpuTransformer::kv_bytes() const { return impl_->kv_bytes; }

absl::StatusOr<std::unique_ptr<GpuTransformer>> GpuTransformer::Create(const ModelWeights& w,
                                                                      const GpuOptions& o) {
  const ModelConfig& c = w.config;
  MOE_ASSIGN_OR_RETURN(int devices, cuda::DeviceCount());
  if (devices == 0) return absl::FailedPreconditionError("no CUDA device on this machine");
  if (o.device < 0 || o.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", o.device, " does not exist (this machine has ", devices, ")"));
  }
  MOE_RETURN_IF_ERROR(CheckSupported(w));
  if (o.max_batch_tokens < 1 || o.max_batch_seqs < 1 || o.kv_blocks < 1 ||
      o.kv_block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU options must be positive: max_batch_tokens ", o.max_batch_tokens,
        ", max_batch_seqs ", o.max_batch_seqs, ", kv_blocks ", o.kv_blocks, ", kv_block_size ",
        o.kv_block_size));
  }
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.c = c;
  m.o = o;
  if (o.collective != nullptr) {
    m.rank = o.collective->rank();
    m.world = o.collective->world_size();
    if (static_cast<int>(o.rank_experts.size()) != m.world + 1 || o.rank_experts.front() != 0 ||
        o.rank_experts.back() != c.num_experts ||
        !std::is_sorted(o.rank_experts.begin(), o.rank_experts.end())) {
      return absl::InvalidArgumentError(
          "GPU: rank_experts must hold world_size + 1 ascending bounds from 0 to num_experts");
    }
    m.bounds.assign(o.rank_experts.begin(), o.rank_experts.end());
    m.expert_begin = o.rank_experts[m.rank];
    m.local_experts = o.rank_experts[m.rank + 1] - m.expert_begin;
  } else {
    m.expert_begin = 0;
    m.local_experts = c.num_experts;
  }
  if (w.expert_begin != m.expert_begin || w.expert_end != m.expert_begin + m.local_experts) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU: the weights hold experts [", w.expert_begin, ", ", w.expert_end, "), this rank needs [",
        m.expert_begin, ", ", m.expert_begin + m.local_experts, ")"));
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
  MOE_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&m.num_sms, cudaDevAttrMultiProcessorCount, o.device));
  m.max_blocks_per_seq = (c.max_position_embeddings + o.kv_block_size - 1) / o.kv_block_size;

  DeviceArena& a = m.arena;
  const int H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size;
  const int El = m.local_experts;
  const int q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;

  // A matrix [out, in] into packed fragment order.
  auto pack_linear = [&](const TensorView& t, int out, int in) -> absl::StatusOr<uint16_t*> {
    std::vector<uint16_t> bits;
    AppendBf16(t, &bits);
    MOE_ASSIGN_OR_RETURN(uint16_t * raw, a.Upload(bits));
    MOE_ASSIGN_OR_RETURN(uint16_t * packed, a.Alloc<uint16_t>(cuda::LinearPackedSize(out, in)));
    MOE_CUDA_RETURN_IF_ERROR(cuda::PackLinearWeight(raw, out, in, packed, nullptr));
    MOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    a.Free(raw);
    return packed;
  };
  m.layers.resize(c.num_layers);
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
    for (int e = m.expert_begin; e < m.expert_begin + El; ++e) {
      AppendBf16(lw.experts[e].gate, &gate);
      AppendBf16(lw.experts[e].up, &up);
      AppendBf16(lw.experts[e].down, &down);
    }
    MOE_ASSIGN_OR_RETURN(uint16_t * gate_raw, a.Upload(gate));
    MOE_ASSIGN_OR_RETURN(uint16_t * up_raw, a.Upload(up));
    MOE_ASSIGN_OR_RETURN(uint16_t * down_raw, a.Upload(down));
    MOE_ASSIGN_OR_RETURN(d.gate_up, a.Alloc<uint16_t>(size_t{2} * El * I * H));
    MOE_ASSIGN_OR_RETURN(d.down, a.Alloc<uint16_t>(size_t{1} * El * H * I));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePackGateUp(gate_raw, up_raw, El, I, H, d.gate_up, nullptr));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePackDown(down_raw, El, H, I, d.down, nullptr));
    MOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    for (void* p : {static_cast<void*>(router_raw), static_cast<void*>(gate_raw),
                    static_cast<void*>(up_raw), static_cast<void*>(down_raw)}) {
      a.Free(p);
    }
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
  m.weight_bytes = a.bytes();

  // The KV pool.
  const size_t pool = static_cast<size_t>(o.kv_blocks) * o.kv_block_size * kv_dim;
  for (Impl::Layer& d : m.layers) {
    MOE_ASSIGN_OR_RETURN(d.k_pool, a.Alloc<uint16_t>(pool));
    MOE_ASSIGN_OR_RETURN(d.v_pool, a.Alloc<uint16_t>(pool));
  }
  m.kv_bytes = a.bytes() - m.weight_bytes;

  // Scratch.
  const size_t T = o.max_batch_tokens, S = o.max_batch_seqs, K = c.top_k;
  const size_t meta = 4 * T + S + 1 + S * m.max_blocks_per_seq;
  MOE_ASSIGN_OR_RETURN(m.meta, a.Alloc<int32_t>(meta));
  m.host_meta.reserve(meta);
  MOE_ASSIGN_OR_RETURN(m.h, a.Alloc<float>(T * H));
  MOE_ASSIGN_OR_RETURN(m.q, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.k, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.v, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.qn, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.kn, a.Alloc<float>(T * kv_dim));
  MOE_ASSIGN_OR_RETURN(m.attn, a.Alloc<float>(T * q_dim));
  MOE_ASSIGN_OR_RETURN(m.proj, a.Alloc<float>(T * H));
  MOE_ASSIGN_OR_RETURN(m.attn_ws, a.Alloc<float>(kAttentionWorkspaceFloats));
  // Logits come out in pieces of up to S rows (one per chunk in a serving
  // step; more only when every position's logits are asked for).
  m.logit_rows_cap = static_cast<int>(S);
  MOE_ASSIGN_OR_RETURN(m.rows_h, a.Alloc<float>(S * H));
  MOE_ASSIGN_OR_RETURN(m.logits, a.Alloc<float>(S * c.vocab_size));
  MOE_ASSIGN_OR_RETURN(m.xb, a.Alloc<uint16_t>(T * std::max(H, q_dim)));
  MOE_ASSIGN_OR_RETURN(m.router_logits, a.Alloc<float>(T * E));
  MOE_ASSIGN_OR_RETURN(m.route_w, a.Alloc<float>(T * K));
  MOE_ASSIGN_OR_RETURN(m.route_ids, a.Alloc<int32_t>(T * K));
  MOE_ASSIGN_OR_RETURN(m.offsets, a.Alloc<int32_t>(E + 1));
  MOE_ASSIGN_OR_RETURN(m.active, a.Alloc<int32_t>(E));
  MOE_ASSIGN_OR_RETURN(m.active_count, a.Alloc<int32_t>(1));
  MOE_ASSIGN_OR_RETURN(m.row_token, a.Alloc<int32_t>(T * K));
  MOE_ASSIGN_OR_RETURN(m.pair_row, a.Alloc<int32_t>(T * K));
  MOE_ASSIGN_OR_RETURN(m.expert_counts, a.Alloc<unsigned long long>(El));
  MOE_CUDA_RETURN_IF_ERROR(cudaMemset(m.expert_counts, 0, sizeof(unsigned long long) * El));
  m.tokens_per_expert = std::make_unique<std::atomic<uint64_t>[]>(std::max(El, 1));
  m.host_counts.assign(El, 0);
  // Expert rows: this rank's own (T * k), or up to T * k from every rank.
  size_t expert_rows = T * K;
  if (o.collective != nullptr) {
    m.recv_cap = static_cast<int64_t>(T * K) * m.world;
    expert_rows = m.recv_cap;
    std::vector<int32_t> base(E);
    for (int r = 0; r < m.world; ++r) {
      for (int e = o.rank_experts[r]; e < o.rank_experts[r + 1]; ++e) base[e] = o.rank_experts[r];
    }
    MOE_ASSIGN_OR_RETURN(m.expert_base, a.Upload(base));
    MOE_ASSIGN_OR_RETURN(m.send_ids, a.Alloc<int32_t>(T * K));
    MOE_ASSIGN_OR_RETURN(m.send_h, a.Alloc<uint16_t>(T * K * H));
    MOE_ASSIGN_OR_RETURN(m.back, a.Alloc<float>(T * K * H));
    MOE_ASSIGN_OR_RETURN(m.recv_ids, a.Alloc<int32_t>(m.recv_cap));
    MOE_ASSIGN_OR_RETURN(m.recv_h, a.Alloc<uint16_t>(m.recv_cap * H));
    MOE_ASSIGN_OR_RETURN(m.results, a.Alloc<float>(m.recv_cap * H));
    MOE_ASSIGN_OR_RETURN(m.l_offsets, a.Alloc<int32_t>(El + 1));
    MOE_ASSIGN_OR_RETURN(m.l_active, a.Alloc<int32_t>(std::max(El, 1)));
    MOE_ASSIGN_OR_RETURN(m.l_count, a.Alloc<int32_t>(1));
    MOE_ASSIGN_OR_RETURN(m.l_row_token, a.Alloc<int32_t>(m.recv_cap));
    MOE_ASSIGN_OR_RETURN(m.l_pair_row, a.Alloc<int32_t>(m.recv_cap));
    m.host_offsets.resize(E + 1);
    m.send_counts.resize(m.world);
    m.recv_counts.resize(m.world);
  }
  MOE_ASSIGN_OR_RETURN(m.hh, a.Alloc<uint16_t>(expert_rows * I));
  MOE_ASSIGN_OR_RETURN(m.y, a.Alloc<float>(expert_rows * H));
  MOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::unique_ptr<GpuTransformer>(new GpuTransformer(std::move(impl)));
}

// Every expert here: the MoE block of n tokens (normed, bf16 in xb) into proj.
absl::Status GpuTransformer::Impl::MoeLocal(const Layer& d, int n) {
  const int H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size, K = c.top_k;
  const int rows = n * K;
  cudaStream_t st = nullptr;
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeRouterLogits(xb, n, H, d.router, E, router_logits, st));
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::MoeTopK(router_logits, n, E, K, c.norm_topk_prob, route_ids, route_w, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoePermute(route_ids, n, K, E, offsets, active, active_count,
                                            row_token, pair_row, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeCountTokens(offsets, E, expert_counts, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeGateUp(xb, H, I, d.gate_up, E, offsets, active, active_count,
                                           rows, row_token, hh, st));
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::MoeDown(hh, I, H, d.down, E, offsets, active, active_count, rows, y, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeCombine(y, route_ids, route_w, pair_row, n, K, H, proj, st));
  return absl::OkStatus();
}

// All-to-all-v of device buffers with the counts in send_counts /
// recv_counts (elements of elem_bytes): straight through an NCCL collective,
// through host copies for a host one.
absl::Status GpuTransformer::Impl::Exchange(const void* send, void* recv, size_t elem_bytes) {
  Collective& coll = *o.collective;
  int64_t sent = 0, received = 0;
  for (int r = 0; r < world; ++r) {
    sent += send_counts[r];
    received += recv_counts[r];
  }
  const auto t0 = std::chrono::steady_clock::now();
  absl::Status s;
  if (coll.memory() == MemorySpace::kDevice) {
    s = coll.AllToAllV(send, send_counts, recv, recv_counts, elem_bytes);
  } else {
    stage_send.resize(std::max<size_t>(sent * elem_bytes, 1));
    stage_recv.resize(std::max<size_t>(received * elem_bytes, 1));
    if (sent > 0) {
      MOE_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(stage_send.data(), send, sent * elem_bytes, cudaMemcpyDeviceToHost));
    }
    s = coll.AllToAllV(stage_send.data(), send_counts, stage_recv.data(), recv_counts,
                       elem_bytes);
    if (s.ok() && received > 0) {
      MOE_CUDA_RETURN_IF_ERROR(
          cudaMemcpy(recv, stage_recv.data(), received * elem_bytes, cudaMemcpyHostToDevice));
    }
  }
  a2a_nanos.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count(),
                      std::memory_order_relaxed);
  a2a_bytes.fetch_add((sent - send_counts[rank]) * elem_bytes, std::memory_order_relaxed);
  return s;
}

// Experts spread over the group: the MoE block of this rank's n tokens into
// proj, serving the rows the other ranks send. n may be 0.
absl::Status GpuTransformer::Impl::MoeExchange(const Layer& d, int n) {
  const int H = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size, K = c.top_k;
  const int El = local_experts;
  const int rows = n * K;
  cudaStream_t st = nullptr;
  // 1. Route and group this rank's (token, expert) pairs by expert: ranks
  // own ascending ranges of experts, so that also groups them by rank.
  if (n > 0) {
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeRouterLogits(xb, n, H, d.router, E, router_logits, st));
    MOE_CUDA_RETURN_IF_ERROR(
        cuda::MoeTopK(router_logits, n, E, K, c.norm_topk_prob, route_ids, route_w, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoePermute(route_ids, n, K, E, offsets, active, active_count,
                                              row_token, pair_row, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::MoeRowExpert(offsets, E, expert_base, rows, send_ids, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::GatherRows(xb, int64_t{H} * 2, row_token, rows, send_h, st));
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(host_offsets.data(), offsets, sizeof(int32_t) * (E + 1),
                                        cudaMemcpyDeviceToHost));
  } else {
    std::fill(host_offsets.begin(), host_offsets.end(), 0);
  }
  for (int r = 0; r < world; ++r) {
    send_counts[r] = host_offsets[bounds[r + 1]] - host_offsets[bounds[r]];
  }
  // 2. Counts, then expert ids and rows.
  {
    const auto t0 = std::chrono::steady_clock::now();
    MOE_RETURN_IF_ERROR(o.collective->AllToAll(send_counts.data(), recv_counts.data()));
    a2a_nanos.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count(),
                        std::memory_order_relaxed);
  }
  int64_t received = 0;
  for (int64_t v : recv_counts) received += v;
  if (received > recv_cap) {
    return absl::InternalError(absl::StrCat("GPU expert exchange: peers sent ", received,
                                            " rows, more than the ", recv_cap,
                                            " this rank holds room for (do all ranks use the "
                                            "same --max-num-batched-tokens?)"));
  }
  MOE_RETURN_IF_ERROR(Exchange(send_ids, recv_ids, sizeof(int32_t)));
  MOE_RETURN_IF_ERROR(Exchange(send_h, recv_h, sizeof(uint16_t) * H));
  // 3. The local experts on every row that arrived, then the results in
  // arrival order.
  const int R = static_cast<int>(received);
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoePermute(recv_ids, R, 1, El, l_offsets, l_active, l_count,
                                            l_row_token, l_pair_row, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeCountTokens(l_offsets, El, expert_counts, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeGateUp(recv_h, H, I, d.gate_up, El, l_offsets, l_active,
                                           l_count, R, l_row_token, hh, st));
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::MoeDown(hh, I, H, d.down, El, l_offsets, l_active, l_count, R, y, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::GatherRows(y, int64_t{H} * 4, l_pair_row, R, results, st));
  // 4. Results back to where the rows came from, in the order they were sent.
  std::swap(send_counts, recv_counts);
  absl::Status back_status = Exchange(results, back, sizeof(float) * H);
  std::swap(send_counts, recv_counts);
  MOE_RETURN_IF_ERROR(back_status);
  // 5. Combine in ascending expert id; sent row j of pair (t, i) is
  // pair_row[t * K + i], and the results came back in that order.
  if (n > 0) {
    MOE_CUDA_RETURN_IF_ERROR(
        cuda::MoeCombine(back, route_ids, route_w, pair_row, n, K, H, proj, st));
  }
  return absl::OkStatus();
}

absl::Status GpuTransformer::Forward(absl::Span<const SequenceChunk> batch,
                                     std::vector<float>* logits) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const int H = c.hidden_size;
  const int q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  const int bs = m.o.kv_block_size;
  MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(m.o.device));

  // Check the batch and lay out its metadata on the host.
  int64_t total = 0;
  int blocks = 1;  // columns of the block tables: the batch's longest
  for (const SequenceChunk& ch : batch) {
    const int64_t len = static_cast<int64_t>(ch.tokens.size());
    total += len;
    if (ch.cache == nullptr) return absl::InvalidArgumentError("a chunk without a KV cache");
    if (ch.cache->pool().block_size() != bs || ch.cache->pool().num_blocks() > m.o.kv_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the KV cache's pool (", ch.cache->pool().num_blocks(), " blocks of ",
          ch.cache->pool().block_size(), ") does not fit the GPU's (", m.o.kv_blocks,
          " blocks of ", bs, ")"));
    }
    if (ch.start < 0 || ch.start + len > ch.cache->capacity() ||
        ch.start + len > int64_t{m.max_blocks_per_seq} * bs) {
      return absl::InvalidArgumentError(absl::StrCat("positions [", ch.start, ", ",
                                                     ch.start + len, ") do not fit the cache"));
    }
    for (int32_t id : ch.tokens) {
      if (id < 0 || id >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
    blocks = std::max<int>(blocks, static_cast<int>((ch.start + len + bs - 1) / bs));
  }
  const int S = static_cast<int>(batch.size());
  if (total > m.o.max_batch_tokens || S > m.o.max_batch_seqs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a batch of ", total, " tokens in ", S, " chunks; the GPU takes at most ",
        m.o.max_batch_tokens, " tokens in ", m.o.max_batch_seqs, " chunks"));
  }
  const int n = static_cast<int>(total);
  const int T = m.o.max_batch_tokens;
  std::vector<int32_t>& meta = m.host_meta;
  meta.assign(4 * static_cast<size_t>(T) + S + 1 + static_cast<size_t>(S) * blocks, 0);
  int32_t* ids = meta.data();
  int32_t* positions = ids + T;
  int32_t* slots = positions + T;
  int32_t* logit_rows = slots + T;
  int32_t* query_start = logit_rows + T;
  int32_t* tables = query_start + S + 1;
  int num_logit_rows = 0, row = 0, max_kv_len = 1;
  for (int s = 0; s < S; ++s) {
    const SequenceChunk& ch = batch[s];
    const std::vector<int32_t>& table = ch.cache->blocks();
    for (int b = 0; b < blocks && b < static_cast<int>(table.size()); ++b) {
      if (table[b] < 0 || table[b] >= m.o.kv_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("KV block ", table[b], " is outside the GPU pool of ", m.o.kv_blocks));
      }
      tables[static_cast<size_t>(s) * blocks + b] = table[b];
    }
    query_start[s] = row;
    const int len = static_cast<int>(ch.tokens.size());
    for (int i = 0; i < len; ++i, ++row) {
      const int pos = ch.start + i;
      ids[row] = ch.tokens[i];
      positions[row] = pos;
      slots[row] = table[pos / bs] * bs + pos % bs;
      if (ch.all_logits || i == len - 1) logit_rows[num_logit_rows++] = row;
    }
    max_kv_len = std::max(max_kv_len, ch.start + len);
  }
  query_start[S] = row;
  // Everything up in one copy (legacy stream: ordered before the kernels).
  MOE_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(m.meta, meta.data(), meta.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  const int32_t* d_ids = m.meta;
  const int32_t* d_positions = d_ids + T;
  const int32_t* d_slots = d_positions + T;
  const int32_t* d_logit_rows = d_slots + T;
  const int32_t* d_query_start = d_logit_rows + T;
  const int32_t* d_tables = d_query_start + S + 1;

  cudaStream_t st = nullptr;
  const float eps = c.rms_norm_eps;
  cuda::PagedAttentionShape shape;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  shape.block_size = bs;
  shape.window = c.sliding_window.value_or(0);
  int splits = cuda::PagedAttentionNumSplits(n, shape, max_kv_len, m.num_sms);
  while (splits > 1 && cuda::PagedAttentionWorkspaceFloats(n, c.num_heads, c.head_dim, splits) >
                           kAttentionWorkspaceFloats) {
    splits /= 2;
  }
  if (n > 0) {
    MOE_CUDA_RETURN_IF_ERROR(cuda::EmbeddingGather(m.embed, c.vocab_size, H, d_ids, n, m.h, st));
  }
  for (const Impl::Layer& d : m.layers) {
    if (n > 0) {
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::RmsNormToBf16(m.h, n, H, d.input_norm, eps, nullptr, m.xb, st));
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
          MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNorm(m.k, int64_t{n} * c.num_kv_heads, c.head_dim,
                                                 d.k_norm, eps, m.kn, st));
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
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::Rope(q, n, c.num_heads, c.head_dim, d_positions, m.inv_freq, st));
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::Rope(k, n, c.num_kv_heads, c.head_dim, d_positions, m.inv_freq, st));
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::AppendKv(k, m.v, n, kv_dim, d_slots, d.k_pool, d.v_pool, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::PagedAttention(shape, q, n, d_positions, d_query_start, S,
                                                    d_tables, blocks, d.k_pool, d.v_pool, splits,
                                                    splits > 1 ? m.attn_ws : nullptr, m.attn,
                                                    st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::FloatToBf16(m.attn, int64_t{n} * q_dim, m.xb, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, n, q_dim, d.o, H, m.proj, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(m.h, m.proj, int64_t{n} * H, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(m.h, n, H, d.post_norm, eps, nullptr, m.xb, st));
    }
    if (m.o.collective != nullptr) {
      MOE_RETURN_IF_ERROR(m.MoeExchange(d, n));
    } else if (n > 0) {
      MOE_RETURN_IF_ERROR(m.MoeLocal(d, n));
    }
    if (n > 0) MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(m.h, m.proj, int64_t{n} * H, st));
  }
  // The requested rows' logits, in pieces of up to logit_rows_cap rows.
  const size_t first = logits->size();
  logits->resize(first + static_cast<size_t>(num_logit_rows) * c.vocab_size);
  for (int done = 0; done < num_logit_rows; done += m.logit_rows_cap) {
    const int rows = std::min(m.logit_rows_cap, num_logit_rows - done);
    MOE_CUDA_RETURN_IF_ERROR(
        cuda::GatherRows(m.h, int64_t{H} * 4, d_logit_rows + done, rows, m.rows_h, st));
    MOE_CUDA_RETURN_IF_ERROR(
        cuda::RmsNormToBf16(m.rows_h, rows, H, m.final_norm, eps, nullptr, m.xb, st));
    MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(m.xb, rows, H, m.lm_head, c.vocab_size, m.logits, st));
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(logits->data() + first + static_cast<size_t>(done) * c.vocab_size,
                                        m.logits, sizeof(float) * rows * c.vocab_size,
                                        cudaMemcpyDeviceToHost));
  }
  // Tokens per expert, for the metrics.
  if (m.local_experts > 0) {
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(m.host_counts.data(), m.expert_counts,
                                        sizeof(unsigned long long) * m.local_experts,
                                        cudaMemcpyDeviceToHost));
    for (int e = 0; e < m.local_experts; ++e) {
      m.tokens_per_expert[e].store(m.host_counts[e], std::memory_order_relaxed);
    }
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace moeserve
