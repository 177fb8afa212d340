// MetricsServer: serves /metrics in the Prometheus text format (prometheus-cpp's
// serializer from Debian's prometheus-cpp-dev, over cpp-httplib: prometheus-cpp's
// own civetweb-based Exposer crashed our processes on their second scrape, in
// civetweb's worker threads). Every value is produced at scrape
// time by the owner's fill function from its own counters and snapshots, so
// the serving hot paths never touch a metrics library:
//
//   auto server = MetricsServer::Start("0.0.0.0:9400", [&](MetricSet& m) {
//     m.Gauge("moeserve_num_requests_running", "Requests holding KV blocks.", running);
//     m.Histogram("moeserve_request_queue_time_seconds", "…", queue_histogram);
//   });
//
// Names follow vLLM's metrics with the moeserve_ prefix (docs/metrics.md).
// Labels must have bounded cardinality (rank, expert, finish reason; never a
// request).
#ifndef MOESERVE_METRICS_METRICS_SERVER_H_
#define MOESERVE_METRICS_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/histogram.h"
#include "prometheus/metric_family.h"

namespace moeserve {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// The families of one scrape. Samples of the same name (with different
// labels) join one family; its help and type come from the first.
class MetricSet {
 public:
  void Gauge(const std::string& name, const std::string& help, double value,
             const MetricLabels& labels = {});
  // `name` should end in _total (the text format shows it as given).
  void Counter(const std::string& name, const std::string& help, double value,
               const MetricLabels& labels = {});
  void Histogram(const std::string& name, const std::string& help, const moeserve::Histogram& h,
                 const MetricLabels& labels = {});

  std::vector<prometheus::MetricFamily> Take() { return std::move(families_); }
  // The text exposition format of what was added (for tests).
  std::string Text() const;

 private:
  prometheus::ClientMetric& Add(const std::string& name, const std::string& help,
                                prometheus::MetricType type, const MetricLabels& labels);
  std::vector<prometheus::MetricFamily> families_;
};

class MetricsServer {
 public:
  using Fill = std::function<void(MetricSet&)>;
  // Listens on `bind_address` ("HOST:PORT"; port 0 picks a free one). The
  // fill function runs on the server's threads, once per scrape (possibly
  // several at once). UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& bind_address,
                                                              Fill fill);
  ~MetricsServer();  // stops serving

  int port() const { return port_; }

 private:
  struct Impl;
  MetricsServer() = default;

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_METRICS_METRICS_SERVER_H_
