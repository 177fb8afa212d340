// Placement: which worker takes a new request. Each request goes to the
// connected worker with the least outstanding work, estimated as the
// pending tokens of the worker's last LoadReport plus the tokens this router
// has placed on it since that report (prompt + max_tokens each); a tie goes
// to the lowest index. Pure bookkeeping, no locking: the caller (WorkerPool)
// holds its own lock.
//
//   std::vector<WorkerLoad> loads = ...;
//   int i = PickWorker(loads);  // -1: nobody is connected
#ifndef MOESERVE_ROUTER_PLACEMENT_H_
#define MOESERVE_ROUTER_PLACEMENT_H_

#include <cstdint>

#include "absl/types/span.h"

namespace moeserve {
namespace router {

struct WorkerLoad {
  bool connected = false;         // only Welcomed workers are eligible
  bool draining = false;          // and not draining (LoadReport.draining)
  uint64_t reported_pending = 0;  // LoadReport.pending_tokens, last seen
  uint64_t placed_since_report = 0;

  uint64_t outstanding() const { return reported_pending + placed_since_report; }
};

// Index of the eligible worker with the least outstanding() work (lowest
// index on ties), or -1 when none is connected and not draining.
int PickWorker(absl::Span<const WorkerLoad> workers);

// The work a request adds to its worker until the next LoadReport.
inline uint64_t RequestWork(size_t prompt_tokens, uint32_t max_tokens) {
  return static_cast<uint64_t>(prompt_tokens) + max_tokens;
}

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_PLACEMENT_H_
