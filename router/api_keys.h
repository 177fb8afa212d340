// ApiKeys: optional bearer-token authentication of the router's public APIs
// (vLLM's --api-key). With keys loaded, every moeserve.v1.Inference call needs
// the metadata `authorization: Bearer KEY` (UNAUTHENTICATED otherwise) and
// every /v1/* HTTP request the header `Authorization: Bearer KEY` (401).
// Health checks, reflection and /health stay open for probes.
#ifndef MOESERVE_ROUTER_API_KEYS_H_
#define MOESERVE_ROUTER_API_KEYS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moeserve {
namespace router {

class ApiKeys {
 public:
  ApiKeys() = default;  // no keys: everything is open

  // Keys from `file` (one per line; blank lines and lines starting with #
  // ignored) and from `env_value` (one key), either may be empty.
  // INVALID_ARGUMENT if the file cannot be read or names no key.
  static absl::StatusOr<ApiKeys> Load(const std::string& file, const std::string& env_value);

  bool enabled() const { return !keys_.empty(); }
  // True if `authorization` is "Bearer KEY" for a loaded key (compared in
  // time independent of where they differ), or if no keys are loaded.
  bool Allows(absl::string_view authorization) const;
  // The header value to forward for a request `Allows` accepted.
  static std::string Bearer(absl::string_view key) { return "Bearer " + std::string(key); }

 private:
  std::vector<std::string> keys_;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_API_KEYS_H_
