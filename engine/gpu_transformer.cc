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

  // Per-step metadata, uploaded in one copy from pinned memory, at fixed
  // offsets (a captured graph reads them there): see MetaLayout.
  int32_t* meta;
  int32_t* host_meta = nullptr;  // pinned, the same size
  // Sampling: tokens picked on the device, the logits rows the host samples
  // and the expert counters, all read back through pinned memory.
  int32_t* tokens = nullptr;
  int32_t* host_tokens = nullptr;
  float* host_logits = nullptr;  // [S, vocab]
  unsigned long long* host_counts = nullptr;
  std::vector<void*> pinned;
  // Kernels run on `stream`: one of our own without a collective (CUDA
  // graphs need one), the legacy default stream with one (the exchange's
  // host staging and NCCL's stream are ordered against it).
  cudaStream_t stream = nullptr;
  bool own_stream = false;
  // Captured decode steps, by (padded batch, block-table width).
  struct Graph {
    int n, blocks;
    cudaGraphExec_t exec;
    uint64_t last_used;
  };
  std::vector<Graph> graphs;
  uint64_t graph_clock = 0;
  uint64_t graph_captures = 0, graph_launches = 0;

  ~Impl() {
    for (Graph& g : graphs) cudaGraphExecDestroy(g.exec);
    if (own_stream) cudaStreamDestroy(stream);
    for (void* p : pinned) cudaFreeHost(p);
  }
  template <typename T>
  absl::StatusOr<T*> Pinned(size_t n) {
    void* p = nullptr;
    MOE_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p, std::max<size_t>(n, 1) * sizeof(T),
                                           cudaHostAllocDefault));
    pinned.push_back(p);
    return static_cast<T*>(p);
  }
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

  // Where each field of the metadata sits, in int32 units: uniform draws
  // (double) [S], temperatures (float) [S], the batch's real token count,
  // then ids, positions, slots, logit rows [T]; query_start [S + 1]; the
  // block tables [S, blocks] last, so a step uploads only what it uses.
  struct MetaLayout {
    size_t uniform, temperature, count, ids, positions, slots, logit_rows, query_start, tables;
  };
  MetaLayout L;
  cuda::PagedAttentionShape attention;  // set at Create

  // One step's shape, as the kernels see it (a captured graph's key).
  struct StepShape {
    int n = 0;               // token rows (padding included)
    int seqs = 0;            // chunks (padding included)
    int blocks = 1;          // block-table columns
    int splits = 1;          // attention KV splits
    int logit_rows = 0;      // rows of logits
    bool sample = false;     // run the sampling kernel and read tokens back
  };
  // Enqueues the whole step on `stream`: the metadata upload, the layers,
  // the logits of the first min(logit_rows, S) rows and, when sampling, the
  // tokens into host_tokens. No host synchronisation without a collective,
  // so it can be captured.
  absl::Status Enqueue(const StepShape& shape);
  absl::StatusOr<cudaGraphExec_t> GraphFor(const StepShape& shape);
  // logits[0, rows) = lm_head(final_norm(h[logit_rows[first + i]])), on
  // `stream` (rows <= logit_rows_cap).
  absl::Status LmHead(int first, int rows);

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
      o.kv_block_size < 1 || o.max_graphs < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GPU options must be positive: max_batch_tokens ", o.max_batch_tokens,
        ", max_batch_seqs ", o.max_batch_seqs, ", kv_blocks ", o.kv_blocks, ", kv_block_size ",
        o.kv_block_size, ", max_graphs ", o.max_graphs));
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
  m.attention.num_heads = c.num_heads;
  m.attention.num_kv_heads = c.num_kv_heads;
  m.attention.head_dim = c.head_dim;
  m.attention.block_size = o.kv_block_size;
  m.attention.window = c.sliding_window.value_or(0);

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

  // The KV pool, and one more block that a graph's padding rows write to.
  const size_t pool = static_cast<size_t>(o.kv_blocks + 1) * o.kv_block_size * kv_dim;
  for (Impl::Layer& d : m.layers) {
    MOE_ASSIGN_OR_RETURN(d.k_pool, a.Alloc<uint16_t>(pool));
    MOE_ASSIGN_OR_RETURN(d.v_pool, a.Alloc<uint16_t>(pool));
  }
  m.kv_bytes = a.bytes() - m.weight_bytes;

  // Scratch.
  const size_t T = o.max_batch_tokens, S = o.max_batch_seqs, K = c.top_k;
  Impl::MetaLayout& L = m.L;
  L.uniform = 0;
  L.temperature = 2 * S;
  L.count = 3 * S;
  L.ids = 3 * S + 4;  // 16-byte aligned again
  L.positions = L.ids + T;
  L.slots = L.positions + T;
  L.logit_rows = L.slots + T;
  L.query_start = L.logit_rows + T;
  L.tables = L.query_start + S + 1;
  const size_t meta = L.tables + S * m.max_blocks_per_seq;
  MOE_ASSIGN_OR_RETURN(m.meta, a.Alloc<int32_t>(meta));
  MOE_ASSIGN_OR_RETURN(m.host_meta, m.Pinned<int32_t>(meta));
  MOE_ASSIGN_OR_RETURN(m.tokens, a.Alloc<int32_t>(S));
  MOE_ASSIGN_OR_RETURN(m.host_tokens, m.Pinned<int32_t>(S));
  MOE_ASSIGN_OR_RETURN(m.host_logits, m.Pinned<float>(S * c.vocab_size));
  MOE_ASSIGN_OR_RETURN(m.host_counts, m.Pinned<unsigned long long>(El));
  if (o.collective == nullptr) {
    MOE_CUDA_RETURN_IF_ERROR(cudaStreamCreate(&m.stream));
    m.own_stream = true;
  }
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
  cudaStream_t st = stream;
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoeRouterLogits(xb, n, H, d.router, E, router_logits, st));
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::MoeTopK(router_logits, n, E, K, c.norm_topk_prob, route_ids, route_w, st));
  MOE_CUDA_RETURN_IF_ERROR(cuda::MoePermute(route_ids, n, K, E, offsets, active, active_count,
                                            row_token, pair_row, st));
  // Counted from the routes of the real tokens only (a graph's batch is
  // padded; the real count is in the metadata).
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::MoeCountRoutes(route_ids, n, K, meta + L.count, E, expert_counts, st));
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

absl::Status GpuTransformer::Impl::Enqueue(const StepShape& sh) {
  const int H = c.hidden_size;
  const int q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  const int n = sh.n;
  cudaStream_t st = stream;
  const size_t upload = L.tables + static_cast<size_t>(sh.seqs) * sh.blocks;
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(meta, host_meta, upload * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, st));
  const int32_t* d_ids = meta + L.ids;
  const int32_t* d_positions = meta + L.positions;
  const int32_t* d_slots = meta + L.slots;
  const int32_t* d_query_start = meta + L.query_start;
  const int32_t* d_tables = meta + L.tables;
  const float eps = c.rms_norm_eps;
  if (n > 0) MOE_CUDA_RETURN_IF_ERROR(cuda::EmbeddingGather(embed, c.vocab_size, H, d_ids, n, h, st));
  for (const Layer& d : layers) {
    if (n > 0) {
      MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(h, n, H, d.input_norm, eps, nullptr, xb, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(xb, n, H, d.q, q_dim, q, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(xb, n, H, d.k, kv_dim, k, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(xb, n, H, d.v, kv_dim, v, st));
      // q and k as RoPE and attention read them: normed into qn / kn, or the
      // projections themselves.
      float* qr = q;
      float* kr = k;
      switch (c.qk_norm) {
        case QkNorm::kPerHead:
          MOE_CUDA_RETURN_IF_ERROR(
              cuda::RmsNorm(q, int64_t{n} * c.num_heads, c.head_dim, d.q_norm, eps, qn, st));
          MOE_CUDA_RETURN_IF_ERROR(
              cuda::RmsNorm(k, int64_t{n} * c.num_kv_heads, c.head_dim, d.k_norm, eps, kn, st));
          qr = qn;
          kr = kn;
          break;
        case QkNorm::kWholeProjection:
          MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNorm(q, n, q_dim, d.q_norm, eps, qn, st));
          MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNorm(k, n, kv_dim, d.k_norm, eps, kn, st));
          qr = qn;
          kr = kn;
          break;
        case QkNorm::kNone:
          break;
      }
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::Rope(qr, n, c.num_heads, c.head_dim, d_positions, inv_freq, st));
      MOE_CUDA_RETURN_IF_ERROR(
          cuda::Rope(kr, n, c.num_kv_heads, c.head_dim, d_positions, inv_freq, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::AppendKv(kr, v, n, kv_dim, d_slots, d.k_pool, d.v_pool, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::PagedAttention(
          attention, qr, n, d_positions, d_query_start, sh.seqs, d_tables, sh.blocks, d.k_pool,
          d.v_pool, sh.splits, sh.splits > 1 ? attn_ws : nullptr, attn, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::FloatToBf16(attn, int64_t{n} * q_dim, xb, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(xb, n, q_dim, d.o, H, proj, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(h, proj, int64_t{n} * H, st));
      MOE_CUDA_RETURN_IF_ERROR(cuda::RmsNormToBf16(h, n, H, d.post_norm, eps, nullptr, xb, st));
    }
    if (o.collective != nullptr) {
      MOE_RETURN_IF_ERROR(MoeExchange(d, n));
    } else if (n > 0) {
      MOE_RETURN_IF_ERROR(MoeLocal(d, n));
    }
    if (n > 0) MOE_CUDA_RETURN_IF_ERROR(cuda::AddInPlace(h, proj, int64_t{n} * H, st));
  }
  // The first piece of logits (the caller fetches the rest); sampled, its
  // tokens straight to pinned memory.
  const int rows = std::min(sh.logit_rows, logit_rows_cap);
  if (rows > 0) {
    MOE_RETURN_IF_ERROR(LmHead(0, rows));
    if (sh.sample) {
      MOE_CUDA_RETURN_IF_ERROR(cuda::SampleFromLogits(
          logits, rows, c.vocab_size, reinterpret_cast<const float*>(meta + L.temperature),
          reinterpret_cast<const double*>(meta + L.uniform), tokens, st));
      MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_tokens, tokens, sizeof(int32_t) * rows,
                                               cudaMemcpyDeviceToHost, st));
    }
  }
  return absl::OkStatus();
}

absl::Status GpuTransformer::Impl::LmHead(int first, int rows) {
  const int H = c.hidden_size;
  MOE_CUDA_RETURN_IF_ERROR(cuda::GatherRows(h, int64_t{H} * 4, meta + L.logit_rows + first, rows,
                                            rows_h, stream));
  MOE_CUDA_RETURN_IF_ERROR(
      cuda::RmsNormToBf16(rows_h, rows, H, final_norm, c.rms_norm_eps, nullptr, xb, stream));
  MOE_CUDA_RETURN_IF_ERROR(cuda::LinearBf16(xb, rows, H, lm_head, c.vocab_size, logits, stream));
  return absl::OkStatus();
}

absl::StatusOr<cudaGraphExec_t> GpuTransformer::Impl::GraphFor(const StepShape& sh) {
  ++graph_clock;
  for (Graph& g : graphs) {
    if (g.n == sh.n && g.blocks == sh.blocks) {
      g.last_used = graph_clock;
      return g.exec;
    }
  }
  if (static_cast<int>(graphs.size()) >= o.max_graphs) {
    auto lru = std::min_element(graphs.begin(), graphs.end(), [](const Graph& a, const Graph& b) {
      return a.last_used < b.last_used;
    });
    cudaGraphExecDestroy(lru->exec);
    graphs.erase(lru);
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status enqueued = Enqueue(sh);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  MOE_RETURN_IF_ERROR(enqueued);
  MOE_CUDA_RETURN_IF_ERROR(ended);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  MOE_CUDA_RETURN_IF_ERROR(made);
  graphs.push_back({sh.n, sh.blocks, exec, graph_clock});
  ++graph_captures;
  return exec;
}

namespace {

// A graph's batch: 1, 2, 4, then multiples of 8 (vLLM's capture sizes).
int GraphBatch(int n) {
  if (n <= 4) return n <= 1 ? 1 : n <= 2 ? 2 : 4;
  return (n + 7) / 8 * 8;
}

int NextPowerOfTwo(int v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}

}  // namespace

absl::Status GpuTransformer::Forward(absl::Span<const SequenceChunk> batch,
                                     std::vector<float>* logits) {
  return Step(batch, {}, logits, nullptr, nullptr);
}

absl::Status GpuTransformer::ForwardSampled(absl::Span<const SequenceChunk> batch,
                                            absl::Span<const RowSampling> rows,
                                            std::vector<int32_t>* tokens,
                                            const float** host_logits) {
  if (rows.size() != batch.size()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling for ", rows.size(),
                                                   " rows, but the batch has ", batch.size(),
                                                   " chunks"));
  }
  for (const SequenceChunk& ch : batch) {
    if (ch.all_logits) return absl::InvalidArgumentError("ForwardSampled takes no all_logits chunk");
  }
  return Step(batch, rows, nullptr, tokens, host_logits);
}

absl::Status GpuTransformer::Step(absl::Span<const SequenceChunk> batch,
                                  absl::Span<const RowSampling> sampling,
                                  std::vector<float>* logits, std::vector<int32_t>* tokens,
                                  const float** host_logits) {
  Impl& m = *impl_;
  const ModelConfig& c = m.c;
  const int bs = m.o.kv_block_size;
  const bool sampled = tokens != nullptr;
  MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(m.o.device));

  // Check the batch.
  int64_t total = 0;
  int blocks = 1;  // columns of the block tables: the batch's longest
  bool decode = !batch.empty();  // every chunk one token, one logits row
  for (const SequenceChunk& ch : batch) {
    const int64_t len = static_cast<int64_t>(ch.tokens.size());
    total += len;
    decode = decode && len == 1 && !ch.all_logits;
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

  // The shape: a decode step of a sampled forward pass without a collective
  // runs as a graph, its batch padded up to a capture size with rows that
  // read and write only the spare KV block (kv_blocks), and its block
  // tables padded to a power of two.
  Impl::StepShape sh;
  const bool graph = sampled && decode && m.o.cuda_graphs && m.o.collective == nullptr;
  if (graph) {
    sh.n = std::min({GraphBatch(n), m.o.max_batch_seqs, m.o.max_batch_tokens});
    sh.seqs = sh.n;
    sh.blocks = std::min(NextPowerOfTwo(blocks), m.max_blocks_per_seq);
  } else {
    sh.n = n;
    sh.seqs = S;
    sh.blocks = blocks;
  }
  sh.sample = sampled;

  // Lay out the metadata in pinned memory.
  int32_t* meta = m.host_meta;
  const Impl::MetaLayout& L = m.L;
  std::memset(meta + L.query_start, 0,
              sizeof(int32_t) * (m.o.max_batch_seqs + 1 + static_cast<size_t>(sh.seqs) * sh.blocks));
  int32_t* ids = meta + L.ids;
  int32_t* positions = meta + L.positions;
  int32_t* slots = meta + L.slots;
  int32_t* logit_rows = meta + L.logit_rows;
  int32_t* query_start = meta + L.query_start;
  int32_t* tables = meta + L.tables;
  meta[L.count] = n;
  int num_logit_rows = 0, row = 0, max_kv_len = 1;
  for (int s = 0; s < S; ++s) {
    const SequenceChunk& ch = batch[s];
    const std::vector<int32_t>& table = ch.cache->blocks();
    for (int b = 0; b < sh.blocks && b < static_cast<int>(table.size()); ++b) {
      if (table[b] < 0 || table[b] >= m.o.kv_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("KV block ", table[b],
                                                       " is outside the GPU pool of ",
                                                       m.o.kv_blocks));
      }
      tables[static_cast<size_t>(s) * sh.blocks + b] = table[b];
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
  // Padding rows: token 0 at position 0 of a sequence of its own, in the
  // spare block.
  for (int s = S; s < sh.seqs; ++s, ++row) {
    tables[static_cast<size_t>(s) * sh.blocks] = m.o.kv_blocks;
    query_start[s] = row;
    ids[row] = 0;
    positions[row] = 0;
    slots[row] = m.o.kv_blocks * bs;
    logit_rows[num_logit_rows++] = row;
  }
  query_start[sh.seqs] = row;
  sh.logit_rows = num_logit_rows;
  if (sampled) {
    auto* temperature = reinterpret_cast<float*>(meta + L.temperature);
    auto* uniform = reinterpret_cast<double*>(meta + L.uniform);
    for (int r = 0; r < sh.logit_rows; ++r) {
      const bool device = r < S && sampling[r].where == RowSampling::kDevice;
      temperature[r] = device ? sampling[r].temperature : 0.0f;
      uniform[r] = device ? sampling[r].uniform : 0.0;
    }
  }
  // A graph's split count must hold for any context its block tables fit.
  const int kv_len_for_splits = graph ? sh.blocks * bs : max_kv_len;
  sh.splits = cuda::PagedAttentionNumSplits(sh.n, m.attention, kv_len_for_splits, m.num_sms);
  while (sh.splits > 1 && cuda::PagedAttentionWorkspaceFloats(sh.n, c.num_heads, c.head_dim,
                                                              sh.splits) >
                              kAttentionWorkspaceFloats) {
    sh.splits /= 2;
  }

  cudaStream_t st = m.stream;
  if (graph) {
    MOE_ASSIGN_OR_RETURN(cudaGraphExec_t exec, m.GraphFor(sh));
    MOE_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, st));
    ++m.graph_launches;
  } else {
    MOE_RETURN_IF_ERROR(m.Enqueue(sh));
  }
  if (sampled) {
    // The host rows' logits, each to its place in pinned memory (a serving
    // step has one row per chunk, so Enqueue computed them all).
    int host_rows = 0;
    for (int r = 0; r < S; ++r) {
      if (sampling[r].where != RowSampling::kHost) continue;
      MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          m.host_logits + static_cast<size_t>(host_rows++) * c.vocab_size,
          m.logits + static_cast<size_t>(r) * c.vocab_size, sizeof(float) * c.vocab_size,
          cudaMemcpyDeviceToHost, st));
    }
  } else {
    // Every row's logits: the first piece is computed; the rest in pieces
    // of up to logit_rows_cap rows.
    const size_t first = logits->size();
    logits->resize(first + static_cast<size_t>(num_logit_rows) * c.vocab_size);
    for (int done = 0; done < num_logit_rows; done += m.logit_rows_cap) {
      const int rows = std::min(m.logit_rows_cap, num_logit_rows - done);
      if (done > 0) MOE_RETURN_IF_ERROR(m.LmHead(done, rows));
      MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          logits->data() + first + static_cast<size_t>(done) * c.vocab_size, m.logits,
          sizeof(float) * rows * c.vocab_size, cudaMemcpyDeviceToHost, st));
    }
  }
  // Tokens per expert, for the metrics.
  if (m.local_experts > 0) {
    MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(m.host_counts, m.expert_counts,
                                             sizeof(unsigned long long) * m.local_experts,
                                             cudaMemcpyDeviceToHost, st));
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(st));
  MOE_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  for (int e = 0; e < m.local_experts; ++e) {
    m.tokens_per_expert[e].store(m.host_counts[e], std::memory_order_relaxed);
  }
  if (sampled) {
    tokens->assign(S, -1);
    for (int r = 0; r < S; ++r) {
      if (sampling[r].where == RowSampling::kDevice) (*tokens)[r] = m.host_tokens[r];
    }
    *host_logits = m.host_logits;
  }
  return absl::OkStatus();
}

absl::Status GpuTransformer::set_collective(Collective* collective) {
  Impl& m = *impl_;
  if (m.o.collective == nullptr || collective == nullptr || collective->rank() != m.rank ||
      collective->world_size() != m.world) {
    return absl::InvalidArgumentError(
        "GPU: a new group must replace one of the same rank and world size");
  }
  m.o.collective = collective;
  return absl::OkStatus();
}

uint64_t GpuTransformer::graph_captures() const { return impl_->graph_captures; }
uint64_t GpuTransformer::graph_launches() const { return impl_->graph_launches; }

}  // namespace moeserve
