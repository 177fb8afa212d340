// InMemoryKvStore: a KvStore in this process's memory. Rank 0 serves one
// (through CoordinatorService) and uses it directly; tests use it as the
// store of a one-process group.
//
//   InMemoryKvStore store;
//   MOE_RETURN_IF_ERROR(store.Set("epoch/7/nccl_id", id));
//   MOE_ASSIGN_OR_RETURN(std::string v, store.Get("epoch/7/nccl_id", absl::Seconds(1)));
//
// Thread-safe: Get blocks on a condition variable until another thread Sets
// (or Adds) the key or the timeout passes (DEADLINE_EXCEEDED naming the key).
// Add keeps the integer as its decimal text, so Get of an Add-ed key returns
// e.g. "3"; Add on a value that is not an integer is INVALID_ARGUMENT.
#ifndef MOESERVE_COLLECTIVE_IN_MEMORY_KV_STORE_H_
#define MOESERVE_COLLECTIVE_IN_MEMORY_KV_STORE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "collective/kv_store.h"

namespace moeserve {

class InMemoryKvStore final : public KvStore {
 public:
  InMemoryKvStore() = default;
  InMemoryKvStore(const InMemoryKvStore&) = delete;
  InMemoryKvStore& operator=(const InMemoryKvStore&) = delete;

  absl::Status Set(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout) override;
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_IN_MEMORY_KV_STORE_H_
