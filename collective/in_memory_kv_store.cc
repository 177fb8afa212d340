#include "collective/in_memory_kv_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moeserve {

absl::Status InMemoryKvStore::Set(absl::string_view key, absl::string_view value) {
  absl::MutexLock lock(&mu_);
  values_[key] = std::string(value);
  return absl::OkStatus();
}

absl::StatusOr<std::string> InMemoryKvStore::Get(absl::string_view key, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto is_set = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return values_.contains(key); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&is_set), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("key '", key, "' was not set within ", absl::FormatDuration(timeout)));
  }
  return values_.find(key)->second;
}

absl::StatusOr<int64_t> InMemoryKvStore::Add(absl::string_view key, int64_t delta) {
  absl::MutexLock lock(&mu_);
  std::string& text = values_[key];
  int64_t value = 0;
  if (!text.empty() && !absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Add on key '", key, "': its value is not an integer"));
  }
  value += delta;
  text = absl::StrCat(value);
  return value;
}

}  // namespace moeserve
