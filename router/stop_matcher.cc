#include "router/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace moeserve {
namespace router {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

size_t StopMatcher::PartialMatchLength(absl::string_view text) const {
  size_t best = 0;
  for (const std::string& stop : stops_) {
    if (stop.empty()) continue;
    // Longest first; a candidate must start with the stop's first byte.
    for (size_t k = std::min(text.size(), stop.size() - 1); k > best; --k) {
      const absl::string_view tail = text.substr(text.size() - k);
      if (tail[0] == stop[0] && tail == absl::string_view(stop).substr(0, k)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

std::string StopMatcher::Push(absl::string_view text) {
  if (stopped_) return "";
  held_.append(text.data(), text.size());
  // The held-back tail holds no whole stop string (it would have matched
  // before), so searching the whole buffer finds only new matches.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) {
    if (stop.empty()) continue;
    first = std::min(first, held_.find(stop));
  }
  std::string out;
  if (first != std::string::npos) {
    stopped_ = true;
    out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  const size_t keep = PartialMatchLength(held_);
  out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace router
}  // namespace moeserve
