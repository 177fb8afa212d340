#include "tokenizer/json_fields.h"

#include <nlohmann/json.hpp>

#include "tokenizer/string_util.h"

namespace moeserve {
namespace {

std::string_view TypeName(const nlohmann::json& value) { return value.type_name(); }

}  // namespace

absl::StatusOr<JsonFields::Json> JsonFields::Parse(std::string_view text) const {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(Concat(source_, ": not valid JSON: ", e.what()));
  }
}

absl::Status JsonFields::Error(std::string_view where, std::string_view what) const {
  return absl::InvalidArgumentError(
      Concat(source_, ": ", where.empty() ? std::string_view("(top level)") : where, ": ", what));
}

std::string JsonFields::Path(std::string_view where, std::string_view key) {
  return where.empty() ? std::string(key) : Concat(where, ".", key);
}

std::string JsonFields::Index(std::string_view where, size_t index) {
  return Concat(where, "[", index, "]");
}

bool JsonFields::Has(const Json& object, std::string_view key) {
  if (!object.is_object()) return false;
  const auto it = object.find(key);
  return it != object.end() && !it->is_null();
}

absl::Status JsonFields::ExpectObject(const Json& value, std::string_view where) const {
  if (value.is_object()) return absl::OkStatus();
  return Error(where, Concat("expected an object, found ", TypeName(value)));
}

absl::Status JsonFields::ExpectArray(const Json& value, std::string_view where) const {
  if (value.is_array()) return absl::OkStatus();
  return Error(where, Concat("expected an array, found ", TypeName(value)));
}

absl::StatusOr<const JsonFields::Json*> JsonFields::Member(const Json& object, std::string_view key,
                                                           std::string_view where) const {
  if (!object.is_object()) {
    return Error(where, Concat("expected an object, found ", TypeName(object)));
  }
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    return Error(Path(where, key), "missing");
  }
  return &*it;
}

absl::StatusOr<std::string> JsonFields::String(const Json& object, std::string_view key,
                                               std::string_view where) const {
  auto member = Member(object, key, where);
  if (!member.ok()) return member.status();
  if (!(*member)->is_string()) {
    return Error(Path(where, key), Concat("expected a string, found ", TypeName(**member)));
  }
  return (*member)->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> JsonFields::OptionalString(
    const Json& object, std::string_view key, std::string_view where) const {
  if (!Has(object, key)) return std::optional<std::string>();
  auto value = String(object, key, where);
  if (!value.ok()) return value.status();
  return std::optional<std::string>(std::move(*value));
}

absl::StatusOr<bool> JsonFields::Bool(const Json& object, std::string_view key, bool fallback,
                                      std::string_view where) const {
  if (!Has(object, key)) return fallback;
  const Json& value = object.at(std::string(key));
  if (!value.is_boolean()) {
    return Error(Path(where, key), Concat("expected true or false, found ", TypeName(value)));
  }
  return value.get<bool>();
}

absl::StatusOr<int64_t> JsonFields::Int(const Json& object, std::string_view key,
                                        std::string_view where) const {
  auto member = Member(object, key, where);
  if (!member.ok()) return member.status();
  if (!(*member)->is_number_integer()) {
    return Error(Path(where, key), Concat("expected an integer, found ", (*member)->dump()));
  }
  return (*member)->get<int64_t>();
}

absl::StatusOr<std::optional<int64_t>> JsonFields::OptionalInt(const Json& object,
                                                               std::string_view key,
                                                               std::string_view where) const {
  if (!Has(object, key)) return std::optional<int64_t>();
  auto value = Int(object, key, where);
  if (!value.ok()) return value.status();
  return std::optional<int64_t>(*value);
}

}  // namespace moeserve
