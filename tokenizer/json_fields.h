// Typed, error-reporting access to the fields of a parsed JSON document
// (tokenizer.json, tokenizer_config.json). Every error names the document
// and the field's path, e.g.
//   "/m/tokenizer.json: model.merges[7]: expected a string or a pair".
//
//   JsonFields f("/m/tokenizer.json");
//   MOE_ASSIGN_OR_RETURN(std::string type, f.String(node, "type", "model"));
//
// Only .cc files include nlohmann/json.hpp; this header needs the forward
// declaration alone.
#ifndef MOESERVE_TOKENIZER_JSON_FIELDS_H_
#define MOESERVE_TOKENIZER_JSON_FIELDS_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moeserve {

class JsonFields {
 public:
  using Json = nlohmann::json;

  explicit JsonFields(std::string_view source) : source_(source) {}

  // Parses `text`; syntax errors name the source and position.
  absl::StatusOr<Json> Parse(std::string_view text) const;

  // InvalidArgument "<source>: <where>: <what>".
  absl::Status Error(std::string_view where, std::string_view what) const;

  // "<where>.<key>" (or just key at the top level).
  static std::string Path(std::string_view where, std::string_view key);
  static std::string Index(std::string_view where, size_t index);

  // Whether `object` has `key` with a non-null value.
  static bool Has(const Json& object, std::string_view key);

  // The member `key` of `object`, which must exist and not be null.
  absl::StatusOr<const Json*> Member(const Json& object, std::string_view key,
                                     std::string_view where) const;
  absl::StatusOr<std::string> String(const Json& object, std::string_view key,
                                     std::string_view where) const;
  // A missing or null member gives nullopt.
  absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object,
                                                            std::string_view key,
                                                            std::string_view where) const;
  // A missing or null member gives `fallback`.
  absl::StatusOr<bool> Bool(const Json& object, std::string_view key, bool fallback,
                            std::string_view where) const;
  absl::StatusOr<int64_t> Int(const Json& object, std::string_view key,
                              std::string_view where) const;
  absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, std::string_view key,
                                                     std::string_view where) const;
  // `value` itself must be an object / array.
  absl::Status ExpectObject(const Json& value, std::string_view where) const;
  absl::Status ExpectArray(const Json& value, std::string_view where) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_JSON_FIELDS_H_
