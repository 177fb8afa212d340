// RequestMetrics: what the router sees of every Generate call, for its
// Prometheus metrics (docs/metrics.md). Thread-safe; GenerateStream reports
// into it from gRPC's and the worker streams' threads, and the metrics
// server reads it at each scrape. Nothing here is per request: counters and
// histograms only, with the finish reason or status code as the one label.
#ifndef MOESERVE_ROUTER_REQUEST_METRICS_H_
#define MOESERVE_ROUTER_REQUEST_METRICS_H_

#include <cstdint>
#include <map>
#include <string>

#include <mutex>

#include "common/histogram.h"

namespace moeserve {

class MetricSet;

namespace router {

class RequestMetrics {
 public:
  RequestMetrics();

  // The first token of a call reached the router `seconds` after the call began.
  void OnFirstToken(double seconds);
  // `n` more tokens arrived, `gap` seconds after the previous ones: each
  // counts as one inter-token latency of gap / n.
  void OnTokens(int n, double gap);
  // A call ended OK with finish reason "stop" or "length", or was cancelled
  // ("abort"), after `seconds`.
  void OnFinished(const std::string& reason, uint32_t prompt_tokens, uint32_t completion_tokens,
                  double seconds);
  // A call ended with an error status (named by its gRPC code name), before
  // or after reaching a worker.
  void OnError(const std::string& code);

  // moeserve_request_success_total{finished_reason}, moeserve_request_errors_total{code},
  // token counters, and the latency and size histograms.
  void Fill(MetricSet& m) const;

 private:
  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, uint64_t> finished_;
  std::map<std::string, uint64_t> errors_;
  uint64_t prompt_tokens_ = 0;
  uint64_t generation_tokens_ = 0;
  Histogram ttft_;
  Histogram itl_;
  Histogram e2e_;
  Histogram prompt_sizes_;
  Histogram generation_sizes_;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_REQUEST_METRICS_H_
