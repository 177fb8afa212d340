// Histogram: counts of observations in fixed buckets, as Prometheus
// histograms expose them (the metrics server turns a copy into one at scrape
// time). A plain value type: callers guard it with their own lock.
//
//   Histogram h(Histogram::LatencyBuckets());
//   h.Observe(0.012);
#ifndef MOESERVE_COMMON_HISTOGRAM_H_
#define MOESERVE_COMMON_HISTOGRAM_H_

#include <cstdint>
#include <vector>

namespace moeserve {

class Histogram {
 public:
  Histogram() = default;
  // Upper bounds, strictly increasing; +Inf is implied after the last.
  explicit Histogram(std::vector<double> bounds);

  // vLLM's buckets: request latencies (TTFT, end to end, queue, prefill,
  // decode) from 1 ms to 2560 s; token gaps from 1 ms to 80 s; token counts
  // 1, 2, 5, 10, ... up to 10^6.
  static std::vector<double> LatencyBuckets();
  static std::vector<double> TokenGapBuckets();
  static std::vector<double> TokenCountBuckets();

  void Observe(double value, uint64_t times = 1);

  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i]: observations in (bounds[i-1], bounds[i]]; the last entry
  // counts those above every bound. Not cumulative.
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(1, 0);
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_COMMON_HISTOGRAM_H_
