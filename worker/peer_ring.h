// PeerRing: rings the Wake doorbell of every other rank of the group, in
// parallel and without waiting (gRPC's callback client API; each call has a
// short deadline). Used by the Engine when this rank ends an idle period.
#ifndef MOESERVE_WORKER_PEER_RING_H_
#define MOESERVE_WORKER_PEER_RING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/security/credentials.h"

#include "moeserve/internal/v1/worker.grpc.pb.h"

namespace moeserve {

class PeerRing {
 public:
  // `addresses[r]` is rank r's Worker service; this rank's entry is skipped.
  // `credentials`: plaintext when null.
  PeerRing(int rank, uint64_t epoch, const std::vector<std::string>& addresses,
           std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

  void Ring(uint64_t idle_period);

 private:
  int rank_;
  uint64_t epoch_;
  std::vector<std::unique_ptr<internal::v1::Worker::Stub>> peers_;  // null for self
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_PEER_RING_H_
