// KvStore: the small key-value store through which the ranks of a group meet
// (rank 0 hosts it; the others reach it over gRPC). Values are opaque bytes.
//
//   MOE_RETURN_IF_ERROR(store->Set("epoch/7/addr/1", "10.0.0.2:50052"));
//   MOE_ASSIGN_OR_RETURN(std::string id, store->Get("epoch/7/nccl_id", absl::Seconds(60)));
//
// Thread-safe. Implementations: InMemoryKvStore (the one rank 0 serves, and
// tests), CoordinatorClient (the gRPC client the other ranks use).
#ifndef MOESERVE_COLLECTIVE_KV_STORE_H_
#define MOESERVE_COLLECTIVE_KV_STORE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace moeserve {

class KvStore {
 public:
  virtual ~KvStore() = default;

  // Stores value under key, replacing any previous value.
  virtual absl::Status Set(absl::string_view key, absl::string_view value) = 0;

  // The value under key, waiting up to `timeout` for it to be set.
  // DEADLINE_EXCEEDED (naming the key) if it is not set in time;
  // UNAVAILABLE if the store cannot be reached.
  virtual absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) = 0;

  // Adds delta to the integer under key (absent: 0) and returns the result.
  virtual absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_KV_STORE_H_
