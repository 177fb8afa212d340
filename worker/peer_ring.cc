#include "worker/peer_ring.h"

#include "worker/engine.h"

#include <chrono>

#include <grpcpp/grpcpp.h>

namespace moeserve {

namespace v1 = internal::v1;

PeerRing::PeerRing(int rank, uint64_t epoch, const std::vector<std::string>& addresses,
                   std::shared_ptr<grpc::ChannelCredentials> credentials)
    : rank_(rank), epoch_(epoch) {
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  for (size_t r = 0; r < addresses.size(); ++r) {
    if (static_cast<int>(r) == rank) {
      peers_.push_back(nullptr);
      continue;
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    peers_.push_back(v1::Worker::NewStub(grpc::CreateCustomChannel(
        addresses[r], credentials, args)));
  }
}

void PeerRing::Ring(uint64_t idle_period) {
  struct Call {
    grpc::ClientContext context;
    v1::WakeRequest request;
    v1::WakeResponse response;
  };
  for (auto& peer : peers_) {
    if (!peer) continue;
    auto* call = new Call;
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    call->request.set_epoch(epoch_);
    call->request.set_idle_period(idle_period);
    call->request.set_from_rank(rank_);
    call->request.set_sent_monotonic_ns(MonotonicNanos());
    // A lost ring shows up as the next collective's timeout; nothing to do here.
    peer->async()->Wake(&call->context, &call->request, &call->response,
                        [call](grpc::Status) { delete call; });
  }
}

}  // namespace moeserve
