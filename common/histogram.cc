#include "common/histogram.h"

#include <algorithm>

namespace moeserve {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

std::vector<double> Histogram::LatencyBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,  0.75,  1.0,   2.5,
          5.0,   7.5,   10.0, 20.0, 40.0, 80.0, 160., 320., 640., 1280., 2560.};
}

std::vector<double> Histogram::TokenGapBuckets() {
  return {0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
          0.15,  0.2,   0.3,  0.4,   0.5,  0.75,  1.0,  2.5,  5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
}

std::vector<double> Histogram::TokenCountBuckets() {
  std::vector<double> b;
  for (double scale = 1; scale <= 1e6; scale *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m * scale <= 1e6) b.push_back(m * scale);
    }
  }
  return b;
}

void Histogram::Observe(double value, uint64_t times) {
  // First bucket whose upper bound is >= value (Prometheus' "le").
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i] += times;
  sum_ += value * static_cast<double>(times);
  count_ += times;
}

}  // namespace moeserve
