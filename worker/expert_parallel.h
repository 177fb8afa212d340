// ExpertParallelRunner: an MoE layer's experts spread over the ranks of a
// group. Every rank calls Run for every MoE layer of every step, in the
// same order, also with no tokens of its own.
//
// One call, on every rank at once:
//   1. bucket each (token, chosen expert) by the rank that owns the expert;
//   2. all-to-all of the counts, then all-to-all-v of the rows
//      [expert id, hidden state] (a rank with nothing to send sends zero);
//   3. run the local experts on every row that arrived, batched per expert;
//   4. all-to-all-v of the results back to where the rows came from;
//   5. combine: for each token, its experts' outputs weighted, summed in
//      ascending expert id (the ExpertRunner contract), so the result has
//      the single-process engine's bits.
// Not thread-safe (one engine thread drives it).
#ifndef MOESERVE_WORKER_EXPERT_PARALLEL_H_
#define MOESERVE_WORKER_EXPERT_PARALLEL_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "collective/collective.h"
#include "engine/expert_runner.h"
#include "engine/expert_traffic.h"
#include "model/weights.h"
#include "worker/expert_shards.h"

namespace moeserve {

class ExpertParallelRunner : public ExpertRunner, public ExpertTraffic {
 public:
  // `weights` must hold this rank's experts, shards.begin(rank) to
  // shards.end(rank); all three must outlive the runner.
  ExpertParallelRunner(const ModelWeights& weights, Collective& collective,
                       const ExpertShards& shards);

  absl::Status Run(int layer, const float* h, int64_t t, const int32_t* ids,
                   const float* weights, float* out) override;

  // ExpertTraffic.
  double all_to_all_seconds() const override {
    return a2a_nanos_.load(std::memory_order_relaxed) * 1e-9;
  }
  uint64_t all_to_all_bytes() const override { return a2a_bytes_.load(std::memory_order_relaxed); }
  uint64_t expert_tokens(int expert) const override {
    return expert_tokens_[expert].load(std::memory_order_relaxed);
  }

 private:
  absl::Status Exchange(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                        const std::vector<int64_t>& recv_counts, size_t elem_bytes);

  void AddTime(std::chrono::steady_clock::time_point t0);

  const ModelWeights& w_;
  Collective& c_;
  const ExpertShards& shards_;
  std::atomic<int64_t> a2a_nanos_{0};
  std::atomic<uint64_t> a2a_bytes_{0};
  std::unique_ptr<std::atomic<uint64_t>[]> expert_tokens_;

  std::vector<int64_t> send_counts_, recv_counts_;
  std::vector<int64_t> send_pos_;  // per (token, slot): its row in send_
  std::vector<float> send_, recv_, results_, back_;
  std::vector<std::vector<int64_t>> by_expert_;  // local expert -> rows of recv_
  std::vector<float> gathered_, expert_out_, gate_, up_;
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_EXPERT_PARALLEL_H_
