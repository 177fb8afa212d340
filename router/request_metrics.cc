#include "router/request_metrics.h"

#include "metrics/metrics_server.h"

namespace moeserve {
namespace router {

RequestMetrics::RequestMetrics()
    : ttft_(Histogram::LatencyBuckets()),
      itl_(Histogram::TokenGapBuckets()),
      e2e_(Histogram::LatencyBuckets()),
      prompt_sizes_(Histogram::TokenCountBuckets()),
      generation_sizes_(Histogram::TokenCountBuckets()) {
  // Every reason shows from the start (at 0), so rates work at once.
  for (const char* r : {"stop", "length", "abort"}) finished_[r] = 0;
}

void RequestMetrics::OnFirstToken(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Observe(seconds);
}

void RequestMetrics::OnTokens(int n, double gap) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  itl_.Observe(gap / n, static_cast<uint64_t>(n));
}

void RequestMetrics::OnFinished(const std::string& reason, uint32_t prompt_tokens,
                                uint32_t completion_tokens, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++finished_[reason];
  prompt_tokens_ += prompt_tokens;
  generation_tokens_ += completion_tokens;
  e2e_.Observe(seconds);
  prompt_sizes_.Observe(prompt_tokens);
  generation_sizes_.Observe(completion_tokens);
}

void RequestMetrics::OnError(const std::string& code) {
  std::lock_guard<std::mutex> lock(mu_);
  ++errors_[code];
}

void RequestMetrics::Fill(MetricSet& m) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [reason, n] : finished_) {
    m.Counter("moeserve_request_success_total",
              "Requests that ended with a finish reason: stop, length, or abort (cancelled).",
              static_cast<double>(n), {{"finished_reason", reason}});
  }
  for (const auto& [code, n] : errors_) {
    m.Counter("moeserve_request_errors_total",
              "Requests that ended with an error status, by gRPC code.", static_cast<double>(n),
              {{"code", code}});
  }
  m.Counter("moeserve_prompt_tokens_total", "Prompt tokens of finished requests.",
            static_cast<double>(prompt_tokens_));
  m.Counter("moeserve_generation_tokens_total", "Tokens streamed to clients.",
            static_cast<double>(generation_tokens_));
  m.Histogram("moeserve_time_to_first_token_seconds",
              "Time from a call's start to its first token reaching the router.", ttft_);
  m.Histogram("moeserve_inter_token_latency_seconds",
              "Time between tokens of a call as they reach the router.", itl_);
  m.Histogram("moeserve_e2e_request_latency_seconds",
              "Time from a call's start to its end (finished or cancelled).", e2e_);
  m.Histogram("moeserve_request_prompt_tokens", "Prompt tokens per finished request.",
              prompt_sizes_);
  m.Histogram("moeserve_request_generation_tokens", "Generated tokens per finished request.",
              generation_sizes_);
}

}  // namespace router
}  // namespace moeserve
