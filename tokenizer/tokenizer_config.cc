#include "tokenizer/tokenizer_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/string_util.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

// A special token: "<s>", {"content": "<s>", ...}, or null.
absl::StatusOr<std::optional<std::string>> SpecialToken(const JsonFields& f, const Json& root,
                                                        std::string_view key) {
  if (!JsonFields::Has(root, key)) return std::optional<std::string>();
  const Json& value = root.at(std::string(key));
  if (value.is_string()) return std::optional<std::string>(value.get<std::string>());
  if (value.is_object()) {
    MOE_ASSIGN_OR_RETURN(std::string content, f.String(value, "content", key));
    return std::optional<std::string>(std::move(content));
  }
  return f.Error(key, Concat("expected a string or {\"content\": ...}, found ", value.dump()));
}

absl::StatusOr<std::optional<std::string>> ChatTemplate(const JsonFields& f, const Json& root) {
  constexpr std::string_view kKey = "chat_template";
  if (!JsonFields::Has(root, kKey)) return std::optional<std::string>();
  const Json& value = root.at(std::string(kKey));
  if (value.is_string()) return std::optional<std::string>(value.get<std::string>());
  if (!value.is_array()) {
    return f.Error(kKey, Concat("expected a string or a list of {\"name\", "
                                "\"template\"}, found ",
                                value.type_name()));
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string where = JsonFields::Index(kKey, i);
    MOE_ASSIGN_OR_RETURN(std::string name, f.String(value[i], "name", where));
    if (name == "default") {
      MOE_ASSIGN_OR_RETURN(std::string text, f.String(value[i], "template", where));
      return std::optional<std::string>(std::move(text));
    }
    names.push_back(std::move(name));
  }
  std::string listed;
  for (const std::string& name : names) listed += (listed.empty() ? "" : ", ") + name;
  return f.Error(kKey, Concat("no template named \"default\" (found: ", listed, ")"));
}

absl::StatusOr<std::optional<bool>> OptionalBool(const JsonFields& f, const Json& root,
                                                 std::string_view key) {
  if (!JsonFields::Has(root, key)) return std::optional<bool>();
  MOE_ASSIGN_OR_RETURN(bool value, f.Bool(root, key, false, ""));
  return std::optional<bool>(value);
}

}  // namespace

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromJson(std::string_view json_text,
                                                          std::string_view source_name) {
  JsonFields f(source_name);
  MOE_ASSIGN_OR_RETURN(Json root, f.Parse(json_text));
  MOE_RETURN_IF_ERROR(f.ExpectObject(root, ""));
  TokenizerConfig config;
  MOE_ASSIGN_OR_RETURN(config.bos_token, SpecialToken(f, root, "bos_token"));
  MOE_ASSIGN_OR_RETURN(config.eos_token, SpecialToken(f, root, "eos_token"));
  MOE_ASSIGN_OR_RETURN(config.pad_token, SpecialToken(f, root, "pad_token"));
  MOE_ASSIGN_OR_RETURN(config.unk_token, SpecialToken(f, root, "unk_token"));
  MOE_ASSIGN_OR_RETURN(config.chat_template, ChatTemplate(f, root));
  MOE_ASSIGN_OR_RETURN(config.add_bos_token, OptionalBool(f, root, "add_bos_token"));
  MOE_ASSIGN_OR_RETURN(config.add_eos_token, OptionalBool(f, root, "add_eos_token"));
  MOE_ASSIGN_OR_RETURN(config.tokenizer_class, f.OptionalString(root, "tokenizer_class", ""));
  return config;
}

absl::StatusOr<TokenizerConfig> TokenizerConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Concat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return FromJson(text.str(), path);
}

}  // namespace moeserve
