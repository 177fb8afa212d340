// ConnectCoordinator: the client side of the coordinator (coordinator.h).
#include <algorithm>
#include <cstdint>
#include <memory>

#include "absl/strings/str_cat.h"
#include "collective/coordinator.h"
#include "collective/grpc_status.h"
#include "grpcpp/grpcpp.h"

namespace moeserve {
namespace {

namespace pb = internal::v1;

// Extra time the client gives a Get RPC beyond the wait it asks for, so the
// server's own DEADLINE_EXCEEDED (naming the key) normally arrives first.
constexpr absl::Duration kGetSlack = absl::Milliseconds(500);
// Pause before retrying a Get whose connection broke (the server restarted).
constexpr absl::Duration kRetryPause = absl::Milliseconds(50);

class CoordinatorClient final : public KvStore {
 public:
  CoordinatorClient(std::shared_ptr<grpc::Channel> channel, std::string target,
                    absl::Duration op_timeout)
      : channel_(std::move(channel)),
        stub_(pb::Coordinator::NewStub(channel_)),
        target_(std::move(target)),
        op_timeout_(op_timeout) {}

  absl::Status Set(absl::string_view key, absl::string_view value) override {
    pb::SetRequest request;
    request.set_key(std::string(key));
    request.set_value(std::string(value));
    pb::SetResponse response;
    grpc::ClientContext context;
    Prepare(&context, absl::Now() + op_timeout_);
    return Annotate(stub_->Set(&context, request, &response), "Set", key, op_timeout_);
  }

  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const absl::Duration left = std::max(absl::ZeroDuration(), deadline - absl::Now());
      pb::GetRequest request;
      request.set_key(std::string(key));
      request.set_timeout_ms(
          static_cast<uint32_t>(std::min<int64_t>(absl::ToInt64Milliseconds(left), UINT32_MAX)));
      pb::GetResponse response;
      grpc::ClientContext context;
      Prepare(&context, deadline + kGetSlack);
      const grpc::Status status = stub_->Get(&context, request, &response);
      if (status.ok()) return std::move(*response.mutable_value());
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
          absl::Now() + kRetryPause < deadline) {
        absl::SleepFor(kRetryPause);
        continue;
      }
      return Annotate(status, "Get", key, timeout);
    }
  }

  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) override {
    pb::AddRequest request;
    request.set_key(std::string(key));
    request.set_delta(delta);
    pb::AddResponse response;
    grpc::ClientContext context;
    Prepare(&context, absl::Now() + op_timeout_);
    absl::Status status =
        Annotate(stub_->Add(&context, request, &response), "Add", key, op_timeout_);
    if (!status.ok()) return status;
    return response.value();
  }

 private:
  // Every call waits for the channel to be ready (the coordinator may not be
  // up yet), bounded by its own deadline.
  static void Prepare(grpc::ClientContext* context, absl::Time deadline) {
    context->set_wait_for_ready(true);
    context->set_deadline(absl::ToChronoTime(deadline));
  }

  // The RPC's status with the target and key; a deadline that passed while
  // the channel was not connected means the coordinator was unreachable.
  absl::Status Annotate(const grpc::Status& s, absl::string_view op, absl::string_view key,
                        absl::Duration waited) {
    if (s.ok()) return absl::OkStatus();
    absl::StatusCode code = static_cast<absl::StatusCode>(s.error_code());
    std::string detail = s.error_message();
    if (code == absl::StatusCode::kDeadlineExceeded &&
        channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
      code = absl::StatusCode::kUnavailable;
      detail = absl::StrCat("unreachable for ", absl::FormatDuration(waited));
    }
    return absl::Status(code,
                        absl::StrCat("coordinator ", target_, ": ", op, " '", key, "': ", detail));
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Coordinator::Stub> stub_;
  const std::string target_;
  const absl::Duration op_timeout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<KvStore>> ConnectCoordinator(
    const std::string& target, absl::Duration connect_timeout,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  if (target.empty()) return absl::InvalidArgumentError("coordinator target is empty");
  grpc::ChannelArguments args;
  // Retry a coordinator that is not up yet every 100 ms to 1 s, not the
  // default 1 s growing to 2 min: rank 0 may start after the others.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, credentials, args);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + connect_timeout))) {
    return absl::UnavailableError(absl::StrCat("coordinator ", target, " unreachable for ",
                                               absl::FormatDuration(connect_timeout)));
  }
  return std::unique_ptr<KvStore>(
      std::make_unique<CoordinatorClient>(std::move(channel), target, connect_timeout));
}

}  // namespace moeserve
