#include "router/health_service.h"

namespace moeserve {
namespace router {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthService::CheckCall {
 public:
  // Counted in calls_ by whoever creates it, under service mu_.
  explicit CheckCall(HealthService* service) : service_(service) {
    service_->RequestCheck(&context_, &request_, &responder_, service_->loop_->cq(),
                           service_->loop_->server_cq(), &accepted_);
  }

 private:
  void OnAccepted(bool ok) {
    if (!ok) {
      Delete();
      return;
    }
    HealthCheckResponse response;
    {
      absl::MutexLock lock(&service_->mu_);
      if (!service_->stopping_) {
        ++service_->calls_;
        new CheckCall(service_);
      }
      const Status status = service_->StatusLocked(request_.service());
      if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
        responder_.FinishWithError(
            grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service: " + request_.service()),
            &finished_);
        return;
      }
      response.set_status(status);
    }
    responder_.Finish(response, grpc::Status::OK, &finished_);
  }

  void Delete() {
    HealthService* service = service_;
    delete this;
    service->CallDeleted();
  }

  HealthService* const service_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  grpc::ServerAsyncResponseWriter<HealthCheckResponse> responder_{&context_};
  CompletionLoop::FunctionTag accepted_{[this](bool ok) { OnAccepted(ok); }};
  CompletionLoop::FunctionTag finished_{[this](bool) { Delete(); }};
};

// A Watch: one write in flight at a time, always of the latest status; it
// ends when the client cancels, or with UNAVAILABLE once the service stops
// accepting (after the write in flight, if any), so that a watching load
// balancer neither holds the server's shutdown for its whole grace period
// nor mistakes the end for a broken connection. Deleted once its done tag
// is back and no operation is in flight. Fields under service mu_.
class HealthService::WatchCall {
 public:
  // Counted in calls_ by whoever creates it, under service mu_.
  explicit WatchCall(HealthService* service) : service_(service) {
    context_.AsyncNotifyWhenDone(&done_tag_);
    service_->RequestWatch(&context_, &request_, &writer_, service_->loop_->cq(),
                           service_->loop_->server_cq(), &accepted_);
  }

  // Unless an operation is in flight: writes the service's status if it is
  // not the last one sent, or, once the service stops accepting, ends the
  // call.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    if (writing_ || done_ || finished_) return;
    if (service_->stopping_) {
      finished_ = true;
      writing_ = true;
      writer_.Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"),
                     &wrote_);
      return;
    }
    const Status status = service_->StatusLocked(request_.service());
    if (sent_ && status == last_) return;
    sent_ = true;
    last_ = status;
    out_.set_status(status);
    writing_ = true;
    writer_.Write(out_, &wrote_);
  }

 private:
  void OnAccepted(bool ok) {
    absl::MutexLock lock(&service_->mu_);
    if (!ok) {
      service_->parked_.push_back(this);  // no done tag will come
      parked_ = true;
      --service_->calls_;
      return;
    }
    if (!service_->stopping_) {
      ++service_->calls_;
      new WatchCall(service_);
    }
    service_->watchers_.insert(this);
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) {
    bool gone;
    {
      absl::MutexLock lock(&service_->mu_);
      writing_ = false;
      if (ok) MaybeWriteLocked();
      gone = done_ && !writing_;
    }
    if (gone) Delete();
  }

  void OnDone() {
    bool gone;
    {
      absl::MutexLock lock(&service_->mu_);
      if (parked_) return;  // freed by the service
      done_ = true;
      service_->watchers_.erase(this);
      gone = !writing_;
    }
    if (gone) Delete();
  }

  void Delete() {
    HealthService* service = service_;
    delete this;
    service->CallDeleted();
  }

  HealthService* const service_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_{&context_};
  HealthCheckResponse out_;
  Status last_ = HealthCheckResponse::UNKNOWN;
  bool sent_ = false, writing_ = false, done_ = false, parked_ = false, finished_ = false;
  CompletionLoop::FunctionTag accepted_{[this](bool ok) { OnAccepted(ok); }};
  CompletionLoop::FunctionTag wrote_{[this](bool ok) { OnWriteDone(ok); }};
  CompletionLoop::FunctionTag done_tag_{[this](bool) { OnDone(); }};
};

HealthService::~HealthService() {
  absl::MutexLock lock(&mu_);
  for (WatchCall* call : parked_) delete call;
}

void HealthService::Start(CompletionLoop* loop) {
  loop_ = loop;
  absl::MutexLock lock(&mu_);
  calls_ += 2;
  new CheckCall(this);
  new WatchCall(this);
}

HealthService::Status HealthService::StatusLocked(const std::string& service) const {
  auto it = serving_.find(service);
  if (it == serving_.end()) return HealthCheckResponse::SERVICE_UNKNOWN;
  return it->second && !shut_down_ ? HealthCheckResponse::SERVING
                                   : HealthCheckResponse::NOT_SERVING;
}

void HealthService::NotifyLocked() {
  for (WatchCall* w : watchers_) w->MaybeWriteLocked();
}

void HealthService::SetServingStatus(const std::string& service, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  serving_[service] = serving;
  NotifyLocked();
}

void HealthService::SetServingStatus(bool serving) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  for (auto& [name, s] : serving_) s = serving;
  NotifyLocked();
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  NotifyLocked();
}

void HealthService::CallDeleted() {
  absl::MutexLock lock(&mu_);
  --calls_;
}

bool HealthService::WaitForCalls(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&none), timeout);
}

void HealthService::StopAccepting() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  NotifyLocked();  // ends every Watch
}

}  // namespace router
}  // namespace moeserve
