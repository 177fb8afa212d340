#include "metrics/metrics_server.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include <httplib.h>
#include <sys/socket.h>

#include "absl/strings/numbers.h"
#include "prometheus/text_serializer.h"

namespace moeserve {

prometheus::ClientMetric& MetricSet::Add(const std::string& name, const std::string& help,
                                         prometheus::MetricType type,
                                         const MetricLabels& labels) {
  prometheus::MetricFamily* family = nullptr;
  for (auto& f : families_) {
    if (f.name == name) family = &f;
  }
  if (family == nullptr) {
    families_.push_back({name, help, type, {}});
    family = &families_.back();
  }
  family->metric.emplace_back();
  prometheus::ClientMetric& m = family->metric.back();
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}

void MetricSet::Gauge(const std::string& name, const std::string& help, double value,
                      const MetricLabels& labels) {
  Add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
}

void MetricSet::Counter(const std::string& name, const std::string& help, double value,
                        const MetricLabels& labels) {
  Add(name, help, prometheus::MetricType::Counter, labels).counter.value = value;
}

void MetricSet::Histogram(const std::string& name, const std::string& help,
                          const moeserve::Histogram& h, const MetricLabels& labels) {
  prometheus::ClientMetric& m = Add(name, help, prometheus::MetricType::Histogram, labels);
  m.histogram.sample_count = h.count();
  m.histogram.sample_sum = h.sum();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.counts()[i];
    m.histogram.bucket.push_back({cumulative, h.bounds()[i]});
  }
  m.histogram.bucket.push_back({h.count(), std::numeric_limits<double>::infinity()});
}

std::string MetricSet::Text() const { return prometheus::TextSerializer().Serialize(families_); }

struct MetricsServer::Impl {
  Fill fill;
  httplib::Server server;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& bind_address, Fill fill) {
  const size_t colon = bind_address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address must be HOST:PORT, got '", bind_address, "'"));
  }
  std::string host = bind_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = 0;
  if (!absl::SimpleAtoi(bind_address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad metrics port in '", bind_address, "'"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->impl_ = std::make_unique<Impl>();
  Impl* impl = server->impl_.get();
  impl->fill = std::move(fill);
  impl->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib also sets SO_REUSEPORT by default, which would let a second
  // server share a port in use instead of failing.
  impl->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  impl->server.Get("/metrics", [impl](const httplib::Request&, httplib::Response& res) {
    MetricSet set;
    impl->fill(set);
    res.set_content(prometheus::TextSerializer().Serialize(set.Take()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  const int bound = port == 0 ? impl->server.bind_to_any_port(host)
                              : (impl->server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", bind_address));
  }
  server->port_ = bound;
  server->thread_ = std::thread([impl] { impl->server.listen_after_bind(); });
  return server;
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    impl_->server.stop();
    thread_.join();
  }
}

}  // namespace moeserve
