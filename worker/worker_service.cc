#include "worker/worker_service.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/stream_sink.h"

namespace moeserve {

namespace v1 = internal::v1;

WorkerService::WorkerService() = default;
WorkerService::~WorkerService() = default;

void WorkerService::Ready(uint64_t epoch, Engine* engine, Identity identity,
                          std::function<double()> a2a_seconds) {
  epoch_ = epoch;
  engine_ = engine;
  identity_ = std::move(identity);
  a2a_seconds_ = std::move(a2a_seconds);
  std::lock_guard<std::mutex> l(mu_);
  ready_.store(true, std::memory_order_release);
}

void WorkerService::NotReady() {
  {
    std::lock_guard<std::mutex> l(mu_);
    ready_.store(false, std::memory_order_release);
    for (grpc::ServerContext* c : streams_) c->TryCancel();
  }
  // Every call that saw ready_ holds serving_mu_ shared until it is done.
  std::unique_lock<std::shared_mutex> drained(serving_mu_);
  engine_ = nullptr;
}

void WorkerService::BroadcastLoad(const EngineLoad& load) {
  std::lock_guard<std::mutex> l(mu_);
  last_load_ = load;
  v1::WorkerMessage m;
  v1::LoadReport* r = m.mutable_load();
  r->set_active_requests(load.active_requests);
  r->set_pending_tokens(load.pending_tokens);
  r->set_kv_tokens(load.kv_tokens);
  r->set_draining(draining_);
  for (auto& sink : sinks_) sink->Send(m);
}

void WorkerService::SetDraining() {
  EngineLoad load;
  {
    std::lock_guard<std::mutex> l(mu_);
    draining_ = true;
    load = last_load_;
  }
  BroadcastLoad(load);
}

grpc::Status WorkerService::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::WorkerMessage, v1::RouterMessage>* stream) {
  v1::RouterMessage m;
  if (!stream->Read(&m)) return grpc::Status::OK;
  if (!m.has_hello()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message of a Connect stream must be a Hello");
  }
  std::shared_lock<std::shared_mutex> serving(serving_mu_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!ready_.load(std::memory_order_acquire)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "this worker's group is forming (or its weights are loading)");
    }
    streams_.push_back(context);
  }
  auto sink = std::make_shared<StreamSink>(epoch_, stream);
  {
    v1::WorkerMessage welcome;
    v1::Welcome* w = welcome.mutable_welcome();
    w->set_rank(identity_.rank);
    w->set_world_size(identity_.world_size);
    w->set_expert_begin(identity_.expert_begin);
    w->set_expert_end(identity_.expert_end);
    sink->Send(std::move(welcome));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    sinks_.push_back(sink);
  }

  grpc::Status status = grpc::Status::OK;
  while (stream->Read(&m)) {
    if (m.epoch() != epoch_) {
      status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("message for epoch ", m.epoch(),
                                         ", but this group's epoch is ", epoch_));
      break;
    }
    if (m.has_submit()) {
      const v1::Submit& s = m.submit();
      WorkItem item;
      item.request_id = s.request_id();
      item.prompt.assign(s.prompt().begin(), s.prompt().end());
      item.max_tokens = static_cast<int>(s.max_tokens());
      const v1::Sampling& sp = s.sampling();
      item.sampling.temperature = sp.temperature();
      item.sampling.seed = sp.seed();
      item.sampling.top_k = sp.top_k();
      item.sampling.top_p = sp.top_p();
      item.sampling.min_p = sp.min_p();
      item.sampling.repetition_penalty = sp.repetition_penalty();
      item.sampling.presence_penalty = sp.presence_penalty();
      item.sampling.frequency_penalty = sp.frequency_penalty();
      item.sampling.logprobs = sp.logprobs();  // raw mode (the sampler's default)
      item.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
      item.ignore_eos = s.ignore_eos();
      item.priority = s.priority();
      if (absl::Status st = engine_->Submit(sink, std::move(item)); !st.ok()) {
        sink->Refuse(s.request_id(), st);
      }
    } else if (m.has_abort()) {
      engine_->Abort(sink.get(), m.abort().request_id());
    }
  }
  engine_->DropSink(sink.get());
  {
    std::lock_guard<std::mutex> l(mu_);
    sinks_.erase(std::remove(sinks_.begin(), sinks_.end(), sink), sinks_.end());
    streams_.erase(std::remove(streams_.begin(), streams_.end(), context), streams_.end());
  }
  sink->Close();
  // A router's stream ends rarely (the router stopped, restarted, or was
  // lost): worth a line, since its requests here were just freed.
  std::fprintf(stderr, "moeserve-worker: the stream from router %s ended (%s)\n",
               context->peer().c_str(),
               !status.ok()            ? status.error_message().c_str()
               : context->IsCancelled() ? "cancelled: the router went away or stopped answering"
                                        : "closed by the router");
  if (context->IsCancelled() && !ready_.load(std::memory_order_acquire)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "this worker's group broke; it is re-forming");
  }
  return status;
}

grpc::Status WorkerService::Wake(grpc::ServerContext* context, const v1::WakeRequest* request,
                                 v1::WakeResponse* response) {
  std::shared_lock<std::shared_mutex> serving(serving_mu_);
  if (!ready_.load(std::memory_order_acquire) || request->epoch() != epoch_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("wake for epoch ", request->epoch(), ", this group is at ",
                                     epoch_));
  }
  engine_->Wake(request->idle_period(), request->sent_monotonic_ns());
  return grpc::Status::OK;
}

grpc::Status WorkerService::GetStatus(grpc::ServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::WorkerStatus* response) {
  std::shared_lock<std::shared_mutex> serving(serving_mu_);
  if (!ready_.load(std::memory_order_acquire)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the group is still forming");
  }
  response->set_epoch(epoch_);
  response->set_rank(identity_.rank);
  response->set_world_size(identity_.world_size);
  response->set_expert_begin(identity_.expert_begin);
  response->set_expert_end(identity_.expert_end);
  response->set_resident_weight_bytes(identity_.resident_weight_bytes);
  response->set_resident_expert_bytes(identity_.resident_expert_bytes);
  response->set_collective(identity_.collective);
  const EngineStats stats = engine_->stats();
  response->set_steps(stats.steps);
  response->set_step_seconds(stats.step_seconds);
  response->set_generated_tokens(stats.generated_tokens);
  response->set_active_requests(stats.active_requests);
  response->set_running_requests(stats.running_requests);
  response->set_kv_blocks_total(stats.kv_blocks_total);
  response->set_kv_blocks_used(stats.kv_blocks_used);
  response->set_kv_block_size(stats.kv_block_size);
  response->set_preemptions(stats.preemptions);
  response->set_prefix_cache_queries(stats.prefix_queries);
  response->set_prefix_cache_hits(stats.prefix_hits);
  response->set_wakes_by_peer(stats.wakes_by_peer);
  response->set_wake_latency_seconds_sum(stats.wake_latency_sum);
  response->set_wake_latency_seconds_max(stats.wake_latency_max);
  if (a2a_seconds_) response->set_all_to_all_seconds(a2a_seconds_());
  return grpc::Status::OK;
}

}  // namespace moeserve
