// GlooStore: a KvStore seen as the gloo::rendezvous::Store through which a
// Gloo context connects its full mesh (internal to collective/).
//
// Every key gets `prefix` in front. get() and wait() wait for their keys
// through KvStore::Get, up to the given timeout (or the store's own).
// Gloo's Store interface has no error values, so a failure throws
// gloo::IoException; the first failure's absl::Status is kept in error()
// for the caller that catches it.
#ifndef MOESERVE_COLLECTIVE_GLOO_STORE_H_
#define MOESERVE_COLLECTIVE_GLOO_STORE_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "collective/kv_store.h"
#include "gloo/rendezvous/store.h"

namespace moeserve {

class GlooStore final : public gloo::rendezvous::Store {
 public:
  // `store` must outlive this object.
  GlooStore(KvStore& store, std::string prefix, absl::Duration timeout)
      : store_(store), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  // The first failure a call threw for; OK if none.
  absl::Status error() const;

 private:
  std::string Fetch(const std::string& key, absl::Duration timeout);  // throws
  [[noreturn]] void Fail(absl::Status status);

  KvStore& store_;
  const std::string prefix_;
  const absl::Duration timeout_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_GLOO_STORE_H_
