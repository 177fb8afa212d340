#include "engine/transformer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/feed_forward.h"
#include "engine/local_expert_runner.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/router.h"

namespace moeserve {

namespace cpu = kernels::cpu;

namespace {

void Apply(const Linear& l, const float* x, int64_t n, float* y) {
  cpu::Linear(x, n, AsWeight(l.weight), l.bias.empty() ? nullptr : l.bias.data(), y);
}

}  // namespace

struct Transformer::Scratch {
  std::vector<float> x, h, q, k, v, attn, out;
  std::vector<int32_t> positions;
  // MoE.
  std::vector<float> router_logits, route_weights, gate, up, expert_out;
  std::vector<int32_t> route_ids;
};

Transformer::Transformer(const ModelWeights& weights, ExpertRunner* experts)
    : w_(weights),
      own_experts_(experts ? nullptr : std::make_unique<LocalExpertRunner>(weights)),
      experts_(experts ? experts : own_experts_.get()),
      rope_(weights.config.head_dim, weights.config.rope_theta),
      s_(std::make_unique<Scratch>()) {}

Transformer::~Transformer() = default;

KvCache Transformer::NewCache(int capacity) const {
  const ModelConfig& c = w_.config;
  return KvCache(c.num_layers, static_cast<int64_t>(c.num_kv_heads) * c.head_dim, capacity);
}

absl::Status Transformer::Forward(absl::Span<const SequenceChunk> batch,
                                  std::vector<float>* logits) {
  const ModelConfig& c = w_.config;
  Scratch& s = *s_;
  int64_t t_total = 0;
  for (const SequenceChunk& chunk : batch) {
    if (chunk.tokens.empty() || chunk.cache == nullptr || chunk.start < 0) {
      return absl::InvalidArgumentError("a chunk needs tokens, a cache and a start >= 0");
    }
    const int64_t end = chunk.start + static_cast<int64_t>(chunk.tokens.size());
    if (end > chunk.cache->capacity()) {
      return absl::InvalidArgumentError(absl::StrCat("positions up to ", end,
                                                     " do not fit a KV cache of ",
                                                     chunk.cache->capacity()));
    }
    for (int32_t id : chunk.tokens) {
      if (id < 0 || id >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
    t_total += static_cast<int64_t>(chunk.tokens.size());
  }
  const int64_t hidden = c.hidden_size;

  // Embedding.
  s.x.resize(t_total * hidden);
  s.positions.clear();
  {
    int64_t row = 0;
    for (const SequenceChunk& chunk : batch) {
      cpu::GatherRows(AsWeight(w_.embed), chunk.tokens.data(), chunk.tokens.size(),
                      &s.x[row * hidden]);
      for (size_t i = 0; i < chunk.tokens.size(); ++i) s.positions.push_back(chunk.start + i);
      row += static_cast<int64_t>(chunk.tokens.size());
    }
  }

  for (int layer = 0; layer < c.num_layers; ++layer) {
    if (t_total > 0) Attention(layer, batch, t_total);
    MOE_RETURN_IF_ERROR(FeedForwardBlock(layer, t_total));
  }
  if (t_total == 0) return absl::OkStatus();

  // Final norm and lm_head on the rows that want logits.
  std::vector<int64_t> rows;
  {
    int64_t row = 0;
    for (const SequenceChunk& chunk : batch) {
      const int64_t n = static_cast<int64_t>(chunk.tokens.size());
      for (int64_t i = chunk.all_logits ? 0 : n - 1; i < n; ++i) rows.push_back(row + i);
      row += n;
    }
  }
  s.h.resize(rows.size() * hidden);
  for (size_t i = 0; i < rows.size(); ++i) {
    cpu::RmsNorm(&s.x[rows[i] * hidden], 1, hidden, w_.final_norm.data(), c.rms_norm_eps,
                 &s.h[i * hidden]);
  }
  const size_t base = logits->size();
  logits->resize(base + rows.size() * c.vocab_size);
  cpu::Linear(s.h.data(), rows.size(), AsWeight(w_.lm_head), nullptr, logits->data() + base);
  return absl::OkStatus();
}

void Transformer::Attention(int layer, absl::Span<const SequenceChunk> batch, int64_t t) {
  const ModelConfig& c = w_.config;
  const LayerWeights& lw = w_.layers[layer];
  Scratch& s = *s_;
  const int64_t hidden = c.hidden_size, d = c.head_dim;
  const int64_t q_dim = c.num_heads * d, kv_dim = c.num_kv_heads * d;

  s.h.resize(t * hidden);
  cpu::RmsNorm(s.x.data(), t, hidden, lw.input_norm.data(), c.rms_norm_eps, s.h.data());
  s.q.resize(t * q_dim);
  s.k.resize(t * kv_dim);
  s.v.resize(t * kv_dim);
  Apply(lw.q, s.h.data(), t, s.q.data());
  Apply(lw.k, s.h.data(), t, s.k.data());
  Apply(lw.v, s.h.data(), t, s.v.data());

  switch (c.qk_norm) {
    case QkNorm::kPerHead:
      cpu::RmsNorm(s.q.data(), t * c.num_heads, d, lw.q_norm.data(), c.rms_norm_eps, s.q.data());
      cpu::RmsNorm(s.k.data(), t * c.num_kv_heads, d, lw.k_norm.data(), c.rms_norm_eps,
                   s.k.data());
      break;
    case QkNorm::kWholeProjection:
      cpu::RmsNorm(s.q.data(), t, q_dim, lw.q_norm.data(), c.rms_norm_eps, s.q.data());
      cpu::RmsNorm(s.k.data(), t, kv_dim, lw.k_norm.data(), c.rms_norm_eps, s.k.data());
      break;
    case QkNorm::kNone:
      break;
  }
  if (c.clip_qkv) {  // OLMoE clamps after the norms
    const float m = *c.clip_qkv;
    for (auto* buf : {&s.q, &s.k, &s.v}) {
      for (float& x : *buf) x = std::clamp(x, -m, m);
    }
  }
  rope_.Apply(s.q.data(), t, c.num_heads, s.positions.data());
  rope_.Apply(s.k.data(), t, c.num_kv_heads, s.positions.data());

  // Write this step's keys and values, then attend chunk by chunk.
  s.attn.resize(t * q_dim);
  const cpu::AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim,
                                  c.sliding_window.value_or(0)};
  int64_t row = 0;
  for (const SequenceChunk& chunk : batch) {
    const int64_t n = static_cast<int64_t>(chunk.tokens.size());
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(&s.k[(row + i) * kv_dim], kv_dim, chunk.cache->k_row(layer, chunk.start + i));
      std::copy_n(&s.v[(row + i) * kv_dim], kv_dim, chunk.cache->v_row(layer, chunk.start + i));
    }
    cpu::PagedAttention(shape, &s.q[row * q_dim], n, &s.positions[row],
                        chunk.cache->View(layer), &s.attn[row * q_dim]);
    row += n;
  }
  s.out.resize(t * hidden);
  Apply(lw.o, s.attn.data(), t, s.out.data());
  for (int64_t i = 0; i < t * hidden; ++i) s.x[i] += s.out[i];
}

absl::Status Transformer::FeedForwardBlock(int layer, int64_t t) {
  const ModelConfig& c = w_.config;
  const LayerWeights& lw = w_.layers[layer];
  Scratch& s = *s_;
  const int64_t hidden = c.hidden_size;
  s.h.resize(t * hidden);
  cpu::RmsNorm(s.x.data(), t, hidden, lw.post_attention_norm.data(), c.rms_norm_eps,
               s.h.data());
  s.out.resize(t * hidden);
  if (lw.is_moe) {
    MOE_RETURN_IF_ERROR(MoeBlock(layer, t));
  } else if (t > 0) {
    SwiGlu(lw.mlp, s.h.data(), t, s.gate, s.up, s.out.data());
  }
  for (int64_t i = 0; i < t * hidden; ++i) s.x[i] += s.out[i];
  return absl::OkStatus();
}

absl::Status Transformer::MoeBlock(int layer, int64_t t) {
  const ModelConfig& c = w_.config;
  const LayerWeights& lw = w_.layers[layer];
  Scratch& s = *s_;
  const int64_t hidden = c.hidden_size;
  const int e_count = c.num_experts, k = c.top_k;

  // Route (the router is replicated on every rank), then run the experts.
  s.router_logits.resize(t * e_count);
  s.route_ids.resize(t * k);
  s.route_weights.resize(t * k);
  if (t > 0) {
    cpu::Linear(s.h.data(), t, {DType::kF32, lw.router.data(), e_count, hidden}, nullptr,
                s.router_logits.data());
    cpu::RouteTopK(s.router_logits.data(), t, e_count, k, c.norm_topk_prob, s.route_ids.data(),
                   s.route_weights.data());
  }
  MOE_RETURN_IF_ERROR(experts_->Run(layer, s.h.data(), t, s.route_ids.data(),
                                    s.route_weights.data(), s.out.data()));

  // Qwen2-MoE: out += sigmoid(shared_expert_gate · x) * shared_expert(x).
  if (!lw.shared_expert.empty() && t > 0) {
    s.expert_out.resize(t * hidden);
    SwiGlu(lw.shared_expert, s.h.data(), t, s.gate, s.up, s.expert_out.data());
    for (int64_t i = 0; i < t; ++i) {
      double dot = 0.0;
      for (int64_t j = 0; j < hidden; ++j) dot += s.h[i * hidden + j] * lw.shared_expert_gate[j];
      const float g = static_cast<float>(1.0 / (1.0 + std::exp(-dot)));
      for (int64_t j = 0; j < hidden; ++j) s.out[i * hidden + j] += g * s.expert_out[i * hidden + j];
    }
  }
  return absl::OkStatus();
}

}  // namespace moeserve
