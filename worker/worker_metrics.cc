#include "worker/worker_metrics.h"

#include <string>

namespace moeserve {

void FillWorkerDownMetrics(int rank, MetricSet& m) {
  m.Gauge("moeserve_worker_up", "1 while this worker serves in a formed group.", 0,
          {{"rank", std::to_string(rank)}});
}

void FillWorkerMetrics(const WorkerIdentity& id, const Engine& engine,
                       const ExpertTraffic& experts, MetricSet& m) {
  const EngineStats s = engine.stats();
  const MetricLabels rank = {{"rank", std::to_string(id.rank)}};
  m.Gauge("moeserve_worker_up", "1 while this worker serves in a formed group.", 1, rank);
  m.Gauge("moeserve_group_epoch", "The epoch of the group this worker belongs to.",
          static_cast<double>(id.epoch), rank);
  m.Gauge("moeserve_num_requests_running", "Requests holding KV-cache blocks on this rank.",
          s.running_requests, rank);
  m.Gauge("moeserve_num_requests_waiting", "Requests admitted on this rank and waiting to run.",
          s.waiting_requests, rank);
  m.Gauge("moeserve_kv_cache_usage_perc",
          "Fraction of this rank's KV-cache blocks held by requests (0 to 1).",
          s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0,
          rank);
  m.Gauge("moeserve_kv_cache_blocks", "KV-cache blocks on this rank.", s.kv_blocks_total, rank);
  m.Counter("moeserve_prefix_cache_queries_total",
            "Prompt tokens looked up in the prefix cache as requests started.",
            static_cast<double>(s.prefix_queries), rank);
  m.Counter("moeserve_prefix_cache_hits_total",
            "Prompt tokens found in the prefix cache as requests started.",
            static_cast<double>(s.prefix_hits), rank);
  m.Counter("moeserve_num_preemptions_total",
            "Requests whose KV blocks were taken back to make room (they recompute).",
            static_cast<double>(s.preemptions), rank);
  m.Counter("moeserve_worker_prompt_tokens_total", "Prompt tokens of requests started here.",
            static_cast<double>(s.prompt_tokens), rank);
  m.Counter("moeserve_worker_generation_tokens_total", "Tokens generated on this rank.",
            static_cast<double>(s.generated_tokens), rank);
  m.Counter("moeserve_engine_steps_total", "Engine steps in which the group had work.",
            static_cast<double>(s.steps), rank);
  m.Counter("moeserve_engine_step_seconds_total", "Time spent in those steps.", s.step_seconds,
            rank);
  m.Histogram("moeserve_request_queue_time_seconds",
              "Time from a request's arrival on this rank to its first step.", s.queue_time,
              rank);
  m.Histogram("moeserve_request_prefill_time_seconds",
              "Time from a request's first step to its first token.", s.prefill_time, rank);
  m.Histogram("moeserve_request_decode_time_seconds",
              "Time from a request's first token to its last (requests that ended OK).",
              s.decode_time, rank);
  m.Histogram("moeserve_iteration_tokens", "Tokens this rank fed per engine step.",
              s.iteration_tokens, rank);
  m.Histogram("moeserve_all_to_all_step_seconds",
              "Time one engine step spent in the MoE all-to-alls.", s.all_to_all_step_seconds,
              rank);
  m.Counter("moeserve_all_to_all_seconds_total", "Time spent in the MoE all-to-alls.",
            experts.all_to_all_seconds(), rank);
  m.Counter("moeserve_all_to_all_bytes_total", "Bytes this rank sent in the MoE all-to-alls.",
            static_cast<double>(experts.all_to_all_bytes()), rank);
  for (int e = id.expert_begin; e < id.expert_end; ++e) {
    m.Counter("moeserve_expert_tokens_total",
              "Token rows routed to each expert (counted by the rank that hosts it).",
              static_cast<double>(experts.expert_tokens(e)),
              {{"rank", std::to_string(id.rank)}, {"expert", std::to_string(e)}});
  }
}

}  // namespace moeserve
