#include "worker/expert_shards.h"

namespace moeserve {

ExpertShards::ExpertShards(int num_experts, int world_size) {
  const int base = num_experts / world_size, extra = num_experts % world_size;
  begin_.resize(world_size + 1);
  owner_.resize(num_experts);
  for (int r = 0; r <= world_size; ++r) begin_[r] = r * base + (r < extra ? r : extra);
  for (int r = 0; r < world_size; ++r) {
    for (int e = begin_[r]; e < begin_[r + 1]; ++e) owner_[e] = r;
  }
}

}  // namespace moeserve
