#include "router/api_keys.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moeserve {
namespace router {
namespace {

// Compares without stopping at the first difference, so response time does
// not tell an attacker how much of a guess was right.
bool SameSecret(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& file, const std::string& env_value) {
  ApiKeys keys;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read --api-key-file ", file));
    std::string line;
    while (std::getline(in, line)) {
      const absl::string_view key = absl::StripAsciiWhitespace(line);
      if (key.empty() || key[0] == '#') continue;
      keys.keys_.emplace_back(key);
    }
    if (keys.keys_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--api-key-file ", file, " holds no key"));
    }
  }
  const absl::string_view env = absl::StripAsciiWhitespace(env_value);
  if (!env.empty()) keys.keys_.emplace_back(env);
  return keys;
}

bool ApiKeys::Allows(absl::string_view authorization) const {
  if (keys_.empty()) return true;
  authorization = absl::StripAsciiWhitespace(authorization);
  if (!absl::StartsWithIgnoreCase(authorization, "bearer ")) return false;
  const absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(7));
  bool ok = false;
  for (const std::string& key : keys_) ok |= SameSecret(token, key);
  return ok;
}

}  // namespace router
}  // namespace moeserve
