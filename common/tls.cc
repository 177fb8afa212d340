#include "common/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace moeserve {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", flag, " ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (out.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, " is not a PEM file"));
  }
  return out.str();
}

namespace {

struct Pems {
  std::string cert, key, ca;
};

absl::StatusOr<Pems> Load(const TlsFiles& tls) {
  Pems p;
  auto cert = ReadPemFile(tls.cert, "the TLS certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(tls.key, "the TLS key");
  if (!key.ok()) return key.status();
  auto ca = ReadPemFile(tls.ca, "the TLS CA");
  if (!ca.ok()) return ca.status();
  p.cert = *std::move(cert);
  p.key = *std::move(key);
  p.ca = *std::move(ca);
  return p;
}

}  // namespace

absl::Status CheckTlsFiles(const TlsFiles& tls, const std::string& prefix) {
  if (!tls.enabled()) return absl::OkStatus();
  for (const auto& [value, name] : {std::pair<const std::string&, const char*>{tls.cert, "cert"},
                                    {tls.key, "key"},
                                    {tls.ca, "ca"}}) {
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mutual TLS needs ", prefix, "cert, ", prefix, "key and ", prefix, "ca; ", prefix,
          name, " is missing"));
    }
    if (auto pem = ReadPemFile(value, prefix + name); !pem.ok()) return pem.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  auto pems = Load(tls);
  if (!pems.ok()) return pems.status();
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = pems->ca;
  options.pem_key_cert_pairs.push_back({pems->key, pems->cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  auto pems = Load(tls);
  if (!pems.ok()) return pems.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pems->ca;
  options.pem_private_key = pems->key;
  options.pem_cert_chain = pems->cert;
  return grpc::SslCredentials(options);
}

}  // namespace moeserve
