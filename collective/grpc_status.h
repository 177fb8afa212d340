// Conversions between absl::Status and grpc::Status (the codes match one to
// one), for the coordinator's RPC edge.
#ifndef MOESERVE_COLLECTIVE_GRPC_STATUS_H_
#define MOESERVE_COLLECTIVE_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace moeserve {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_GRPC_STATUS_H_
