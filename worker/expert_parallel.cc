#include "worker/expert_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/feed_forward.h"

namespace moeserve {

namespace {

// Rows sent to the owner: the expert id's bits, then the hidden state.
float IdAsFloat(int32_t id) {
  float f;
  std::memcpy(&f, &id, sizeof f);
  return f;
}
int32_t FloatAsId(float f) {
  int32_t id;
  std::memcpy(&id, &f, sizeof id);
  return id;
}

}  // namespace

void ExpertParallelRunner::AddTime(std::chrono::steady_clock::time_point t0) {
  a2a_nanos_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now() - t0)
                           .count(),
                       std::memory_order_relaxed);
}

ExpertParallelRunner::ExpertParallelRunner(const ModelWeights& weights, Collective& collective,
                                           const ExpertShards& shards)
    : w_(weights),
      c_(collective),
      shards_(shards),
      expert_tokens_(new std::atomic<uint64_t>[weights.config.num_experts]) {
  for (int e = 0; e < weights.config.num_experts; ++e) expert_tokens_[e] = 0;
}

absl::Status ExpertParallelRunner::Exchange(const void* send,
                                            const std::vector<int64_t>& send_counts, void* recv,
                                            const std::vector<int64_t>& recv_counts,
                                            size_t elem_bytes) {
  const auto t0 = std::chrono::steady_clock::now();
  absl::Status s = c_.AllToAllV(send, send_counts, recv, recv_counts, elem_bytes);
  AddTime(t0);
  uint64_t sent = 0;
  for (int64_t n : send_counts) sent += static_cast<uint64_t>(n);
  a2a_bytes_.fetch_add(sent * elem_bytes, std::memory_order_relaxed);
  return s;
}

absl::Status ExpertParallelRunner::Run(int layer, const float* h, int64_t t, const int32_t* ids,
                                       const float* weights, float* out) {
  const ModelConfig& c = w_.config;
  const int world = c_.world_size(), rank = c_.rank();
  const int k = c.top_k;
  const int64_t hidden = c.hidden_size, row = hidden + 1;
  const int64_t entries = t * k;

  // 1. Bucket (token, slot) entries by owning rank, keeping entry order.
  send_counts_.assign(world, 0);
  for (int64_t j = 0; j < entries; ++j) ++send_counts_[shards_.owner(ids[j])];
  std::vector<int64_t> next(world, 0);
  for (int r = 1; r < world; ++r) next[r] = next[r - 1] + send_counts_[r - 1];
  send_pos_.resize(entries);
  send_.resize(entries * row);
  for (int64_t j = 0; j < entries; ++j) {
    const int64_t p = next[shards_.owner(ids[j])]++;
    send_pos_[j] = p;
    send_[p * row] = IdAsFloat(ids[j]);
    std::copy_n(&h[(j / k) * hidden], hidden, &send_[p * row + 1]);
  }

  // 2. Counts, then rows.
  recv_counts_.assign(world, 0);
  {
    const auto t0 = std::chrono::steady_clock::now();
    MOE_RETURN_IF_ERROR(c_.AllToAll(send_counts_.data(), recv_counts_.data()));
    AddTime(t0);
  }
  int64_t received = 0;
  for (int64_t n : recv_counts_) received += n;
  recv_.resize(received * row);
  MOE_RETURN_IF_ERROR(
      Exchange(send_.data(), send_counts_, recv_.data(), recv_counts_, row * sizeof(float)));

  // 3. The local experts on what arrived, batched per expert.
  const int e_begin = shards_.begin(rank), e_end = shards_.end(rank);
  by_expert_.resize(e_end - e_begin);
  for (auto& list : by_expert_) list.clear();
  for (int64_t i = 0; i < received; ++i) {
    const int32_t e = FloatAsId(recv_[i * row]);
    if (e < e_begin || e >= e_end) {
      return absl::InternalError(absl::StrCat("rank ", rank, " received a row for expert ", e,
                                              ", outside its experts [", e_begin, ", ", e_end,
                                              ")"));
    }
    by_expert_[e - e_begin].push_back(i);
  }
  results_.resize(received * hidden);
  const LayerWeights& lw = w_.layers[layer];
  for (int e = e_begin; e < e_end; ++e) {
    const auto& rows = by_expert_[e - e_begin];
    if (rows.empty()) continue;
    const int64_t n = static_cast<int64_t>(rows.size());
    expert_tokens_[e].fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    gathered_.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(&recv_[rows[i] * row + 1], hidden, &gathered_[i * hidden]);
    }
    expert_out_.resize(n * hidden);
    SwiGlu(lw.experts[e], gathered_.data(), n, gate_, up_, expert_out_.data());
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(&expert_out_[i * hidden], hidden, &results_[rows[i] * hidden]);
    }
  }

  // 4. Results back to where their rows came from.
  back_.resize(entries * hidden);
  MOE_RETURN_IF_ERROR(
      Exchange(results_.data(), recv_counts_, back_.data(), send_counts_, hidden * sizeof(float)));

  // 5. Combine each token's experts in ascending expert id.
  std::vector<int> slots(k);
  for (int64_t i = 0; i < t; ++i) {
    for (int s = 0; s < k; ++s) slots[s] = s;
    std::sort(slots.begin(), slots.end(),
              [&](int a, int b) { return ids[i * k + a] < ids[i * k + b]; });
    float* dst = &out[i * hidden];
    std::fill_n(dst, hidden, 0.0f);
    for (int s : slots) {
      AccumulateScaled(dst, weights[i * k + s], &back_[send_pos_[i * k + s] * hidden], hidden);
    }
  }
  return absl::OkStatus();
}

}  // namespace moeserve
