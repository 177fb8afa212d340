// The worker's Prometheus metrics (docs/metrics.md), filled at each scrape
// from the engine's and the expert runner's counters. Every sample carries
// the label rank; per-expert counts add expert (bounded by the experts this
// rank hosts).
#ifndef MOESERVE_WORKER_WORKER_METRICS_H_
#define MOESERVE_WORKER_WORKER_METRICS_H_

#include <cstdint>

#include "metrics/metrics_server.h"
#include "worker/engine.h"
#include "engine/expert_traffic.h"

namespace moeserve {

struct WorkerIdentity {
  int rank = 0;
  int world_size = 1;
  int expert_begin = 0, expert_end = 0;
  uint64_t epoch = 0;
};

void FillWorkerMetrics(const WorkerIdentity& id, const Engine& engine,
                       const ExpertTraffic& experts, MetricSet& m);

// While the group is (re-)forming: only moeserve_worker_up, at 0. The other
// series come back with the next epoch's engine, its counters from zero (as
// after a restart; Prometheus' rate() takes such resets).
void FillWorkerDownMetrics(int rank, MetricSet& m);

}  // namespace moeserve

#endif  // MOESERVE_WORKER_WORKER_METRICS_H_
