#include "worker/group_watch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace moeserve {

namespace v1 = internal::v1;

GroupWatch::GroupWatch(int rank, uint64_t epoch, const std::vector<std::string>& peers,
                       std::shared_ptr<grpc::ChannelCredentials> credentials,
                       std::function<void(absl::Status)> on_lost,
                       std::chrono::milliseconds period, int misses)
    : rank_(rank),
      epoch_(epoch),
      period_(period),
      misses_(std::max(misses, 1)),
      on_lost_(std::move(on_lost)),
      missed_(peers.size(), 0) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  for (size_t r = 0; r < peers.size(); ++r) {
    if (static_cast<int>(r) == rank) {
      peers_.push_back(nullptr);
      continue;
    }
    grpc::ChannelArguments args;
    // Reconnect attempts as often as the watch asks, not gRPC's 1 s..120 s.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(period.count()));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(period.count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(period.count()));
    peers_.push_back(v1::Worker::NewStub(grpc::CreateCustomChannel(peers[r], credentials, args)));
  }
  if (peers_.size() > 1) thread_ = std::thread([this] { Loop(); });
}

GroupWatch::~GroupWatch() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status GroupWatch::Check(int r) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::max<std::chrono::milliseconds>(2 * period_, std::chrono::seconds(1)));
  v1::GetStatusRequest request;
  v1::WorkerStatus status;
  const grpc::Status s = peers_[r]->GetStatus(&context, request, &status);
  if (s.ok()) {
    missed_[r] = 0;
    if (status.epoch() == epoch_) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("rank ", r, " is in epoch ", status.epoch(),
                                               ", not this group's ", epoch_));
  }
  // Unreachable (its process is gone, or it left the group) twice in a row:
  // one refused connection may be a blip.
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && ++missed_[r] >= 2) {
    return absl::UnavailableError(absl::StrCat("rank ", r, " is lost: ", s.error_message()));
  }
  if (++missed_[r] >= misses_) {
    return absl::UnavailableError(absl::StrCat("rank ", r, " did not answer ", misses_,
                                               " status checks: ", s.error_message()));
  }
  return absl::OkStatus();
}

void GroupWatch::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> l(mu_);
      if (cv_.wait_for(l, period_, [&] { return stop_; })) return;
    }
    for (size_t r = 0; r < peers_.size(); ++r) {
      if (!peers_[r]) continue;
      absl::Status lost = Check(static_cast<int>(r));
      if (lost.ok()) continue;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) return;
      }
      on_lost_(std::move(lost));
      return;
    }
  }
}

}  // namespace moeserve
