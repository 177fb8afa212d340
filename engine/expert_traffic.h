// ExpertTraffic: what an MoE engine's expert exchange has done so far, for
// the worker's metrics (docs/metrics.md: moeserve_all_to_all_*,
// moeserve_expert_tokens_total). The CPU worker's ExpertParallelRunner and
// the GPU worker's GpuTransformer both keep these counters.
//
// Every method is safe to call from any thread while the engine runs.
#ifndef MOESERVE_ENGINE_EXPERT_TRAFFIC_H_
#define MOESERVE_ENGINE_EXPERT_TRAFFIC_H_

#include <cstdint>

namespace moeserve {

class ExpertTraffic {
 public:
  virtual ~ExpertTraffic() = default;
  // Wall time spent inside the all-to-all calls so far.
  virtual double all_to_all_seconds() const = 0;
  // Bytes this rank sent in the all-to-alls so far.
  virtual uint64_t all_to_all_bytes() const = 0;
  // Token rows this rank's copy of `expert` (a global expert id) has
  // processed; 0 for experts of other ranks.
  virtual uint64_t expert_tokens(int expert) const = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_EXPERT_TRAFFIC_H_
