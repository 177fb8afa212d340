// CoordinatorService: the server side of the coordinator (coordinator.h).
#include "collective/coordinator.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "collective/grpc_status.h"

namespace moeserve {
namespace {

// A waiting Get re-checks whether its client went away this often.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(100);

}  // namespace

grpc::Status CoordinatorService::Set(grpc::ServerContext*, const internal::v1::SetRequest* request,
                                     internal::v1::SetResponse*) {
  return ToGrpcStatus(store_->Set(request->key(), request->value()));
}

grpc::Status CoordinatorService::Get(grpc::ServerContext* context,
                                     const internal::v1::GetRequest* request,
                                     internal::v1::GetResponse* response) {
  // Wait no longer than asked, than the cap, or than the client will listen.
  const auto client_left = context->deadline() - std::chrono::system_clock::now();
  const absl::Duration wait = std::min(
      {absl::Milliseconds(request->timeout_ms()), kMaxGetWait, absl::FromChrono(client_left)});
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    const absl::Duration slice =
        std::max(absl::ZeroDuration(), std::min(kCancelPoll, deadline - absl::Now()));
    absl::StatusOr<std::string> value = store_->Get(request->key(), slice);
    if (value.ok()) {
      response->set_value(*std::move(value));
      return grpc::Status::OK;
    }
    if (!absl::IsDeadlineExceeded(value.status())) return ToGrpcStatus(value.status());
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped waiting");
    }
    if (absl::Now() >= deadline) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("key '", request->key(), "' was not set within ",
                                       absl::FormatDuration(wait)));
    }
  }
}

grpc::Status CoordinatorService::Add(grpc::ServerContext*, const internal::v1::AddRequest* request,
                                     internal::v1::AddResponse* response) {
  absl::StatusOr<int64_t> value = store_->Add(request->key(), request->delta());
  if (!value.ok()) return ToGrpcStatus(value.status());
  response->set_value(*value);
  return grpc::Status::OK;
}

}  // namespace moeserve
