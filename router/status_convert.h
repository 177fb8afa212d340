// absl::Status <-> grpc::Status. The codes are the same numbers (both are
// google.rpc.Code), so the conversion keeps code and message.
#ifndef MOESERVE_ROUTER_STATUS_CONVERT_H_
#define MOESERVE_ROUTER_STATUS_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace moeserve {
namespace router {

inline absl::Status ToAbslStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_STATUS_CONVERT_H_
