// Mutual TLS for moeserve's internal gRPC traffic (router -> workers, worker
// -> worker doorbell, ranks -> rank 0's store). Every side presents a
// certificate signed by the cluster's CA and accepts only peers that do.
//
//   TlsFiles tls{cert, key, ca};             // all three, or none (plaintext)
//   auto server = ServerCredentialsFor(tls);  // requires and verifies client certs
//   auto channel = ChannelCredentialsFor(tls);
#ifndef MOESERVE_COMMON_TLS_H_
#define MOESERVE_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace moeserve {

struct TlsFiles {
  std::string cert;  // PEM certificate chain presented to peers
  std::string key;   // its PEM private key
  std::string ca;    // PEM CA certificates peers must be signed by
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// The contents of a PEM file; INVALID_ARGUMENT naming `flag` and the path if
// it cannot be read or holds no PEM block.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag);

// INVALID_ARGUMENT unless all three files are given (or none), naming the
// flag `prefix`-cert / -key / -ca that is missing or unreadable.
absl::Status CheckTlsFiles(const TlsFiles& tls, const std::string& prefix);

// Plaintext when !tls.enabled(); else TLS that requires and verifies a client
// certificate signed by tls.ca.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& tls);
// Plaintext when !tls.enabled(); else TLS presenting tls.cert and trusting
// only tls.ca.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsFiles& tls);

}  // namespace moeserve

#endif  // MOESERVE_COMMON_TLS_H_
