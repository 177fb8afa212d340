// Bridges between std::string_view, which the tokenizer's interfaces use, and
// Debian's Abseil, whose absl::string_view is its own type (built without
// ABSL_OPTION_USE_STD_STRING_VIEW): string concatenation and hash maps keyed
// by std::string that can be probed with a std::string_view.
//
//   StringMap<int32_t> vocab;
//   vocab.find(std::string_view("Ġthe"));        // no temporary string
//   std::string msg = Concat("token \"", view, "\" is not in the vocab");
#ifndef MOESERVE_TOKENIZER_STRING_UTIL_H_
#define MOESERVE_TOKENIZER_STRING_UTIL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace moeserve {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

namespace string_util_internal {
template <typename T>
const T& Piece(const T& value) {
  return value;
}
inline absl::string_view Piece(std::string_view value) { return ToAbsl(value); }
}  // namespace string_util_internal

// absl::StrCat that also takes std::string_view arguments.
template <typename... Args>
std::string Concat(const Args&... args) {
  return absl::StrCat(string_util_internal::Piece(args)...);
}

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return absl::Hash<absl::string_view>{}(ToAbsl(s)); }
};

struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringViewHash, StringViewEq>;
using StringSet = absl::flat_hash_set<std::string, StringViewHash, StringViewEq>;

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_STRING_UTIL_H_
