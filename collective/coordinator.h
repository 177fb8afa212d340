// The coordinator: rank 0's KvStore served over gRPC (service
// moeserve.internal.v1.Coordinator), and the client the other ranks use.
//
//   // rank 0
//   InMemoryKvStore store;
//   CoordinatorService service(&store);
//   grpc::ServerBuilder builder;  builder.RegisterService(&service); ...
//   // every other rank
//   MOE_ASSIGN_OR_RETURN(std::unique_ptr<KvStore> store,
//                        ConnectCoordinator("worker-0.workers:50051", absl::Seconds(60)));
//
// Thread-safe. Get on the server waits up to the request's timeout_ms
// (capped at kMaxGetWait) and stops early when the client goes away, so a
// server shutdown is never held up by a waiting Get for long.
#ifndef MOESERVE_COLLECTIVE_COORDINATOR_H_
#define MOESERVE_COLLECTIVE_COORDINATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "absl/time/time.h"
#include "collective/kv_store.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"

namespace moeserve {

class CoordinatorService final : public internal::v1::Coordinator::Service {
 public:
  // The longest a single Get RPC waits on the server.
  static constexpr absl::Duration kMaxGetWait = absl::Minutes(10);

  // Serves `store`, which must outlive the service (and the server).
  explicit CoordinatorService(KvStore* store) : store_(store) {}

  grpc::Status Set(grpc::ServerContext* context, const internal::v1::SetRequest* request,
                   internal::v1::SetResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const internal::v1::GetRequest* request,
                   internal::v1::GetResponse* response) override;
  grpc::Status Add(grpc::ServerContext* context, const internal::v1::AddRequest* request,
                   internal::v1::AddResponse* response) override;

 private:
  KvStore* store_;
};

// A KvStore over a gRPC channel (insecure credentials) to the coordinator at
// `target` ("host:port"). Waits up to `connect_timeout` for the channel to
// connect: UNAVAILABLE naming the target if it does not (INVALID_ARGUMENT for
// an empty target). The coordinator may go away and come back later: Set and
// Add wait up to `connect_timeout` for it, Get up to its own timeout;
// UNAVAILABLE / DEADLINE_EXCEEDED messages name the target and the key.
// `credentials`: plaintext when null (common/tls.h makes mutual-TLS ones).
absl::StatusOr<std::unique_ptr<KvStore>> ConnectCoordinator(
    const std::string& target, absl::Duration connect_timeout,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_COORDINATOR_H_
