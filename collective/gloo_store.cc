#include "collective/gloo_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"

namespace moeserve {

void GlooStore::set(const std::string& key, const std::vector<char>& data) {
  absl::Status s = store_.Set(prefix_ + key, absl::string_view(data.data(), data.size()));
  if (!s.ok()) Fail(std::move(s));
}

std::vector<char> GlooStore::get(const std::string& key) {
  const std::string value = Fetch(key, timeout_);
  return std::vector<char>(value.begin(), value.end());
}

void GlooStore::wait(const std::vector<std::string>& keys) {
  wait(keys, absl::ToChronoMilliseconds(timeout_));
}

void GlooStore::wait(const std::vector<std::string>& keys,
                     const std::chrono::milliseconds& timeout) {
  // One deadline for all the keys; gloo passes kNoTimeout (0) for "forever",
  // which here means the store's own timeout.
  const absl::Duration limit = timeout.count() > 0 ? absl::FromChrono(timeout) : timeout_;
  const absl::Time deadline = absl::Now() + limit;
  for (const std::string& key : keys) {
    Fetch(key, std::max(absl::ZeroDuration(), deadline - absl::Now()));
  }
}

absl::Status GlooStore::error() const {
  absl::MutexLock lock(&mu_);
  return error_;
}

std::string GlooStore::Fetch(const std::string& key, absl::Duration timeout) {
  absl::StatusOr<std::string> value = store_.Get(prefix_ + key, timeout);
  if (!value.ok()) Fail(value.status());
  return *std::move(value);
}

void GlooStore::Fail(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = status;
  }
  throw gloo::IoException(absl::StrCat("rendezvous store: ", status.ToString()));
}

}  // namespace moeserve
