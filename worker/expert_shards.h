// ExpertShards: which rank owns which experts.
//
// Contiguous ranges, as even as possible: with E experts over W ranks, the
// first E % W ranks hold one more. E = 60 over W = 4 gives 15 each; E = 8
// over W = 3 gives [0,3) [3,6) [6,8). W may exceed E (some ranks then hold
// no experts and only run attention and dense layers for their requests).
#ifndef MOESERVE_WORKER_EXPERT_SHARDS_H_
#define MOESERVE_WORKER_EXPERT_SHARDS_H_

#include <vector>

namespace moeserve {

class ExpertShards {
 public:
  ExpertShards(int num_experts, int world_size);

  int world_size() const { return static_cast<int>(begin_.size()) - 1; }
  int num_experts() const { return static_cast<int>(owner_.size()); }
  int begin(int rank) const { return begin_[rank]; }
  int end(int rank) const { return begin_[rank + 1]; }
  int owner(int expert) const { return owner_[expert]; }

 private:
  std::vector<int> begin_;  // W + 1 bounds
  std::vector<int> owner_;  // E entries
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_EXPERT_SHARDS_H_
