// The parts of a Hugging Face tokenizer_config.json that serving needs: the
// BOS/EOS/PAD/UNK token strings (given as a string or as an AddedToken
// object {"content": ...}), whether the tokenizer adds BOS/EOS itself, and
// the Jinja chat template (a string, or a list of {"name", "template"} from
// which "default" is taken).
//
//   MOE_ASSIGN_OR_RETURN(TokenizerConfig config,
//                        TokenizerConfig::FromFile(dir + "/tokenizer_config.json"));
//   if (config.eos_token) stop_id = tokenizer->TokenToId(*config.eos_token);
//
// Unknown fields are ignored; a field of the wrong type is an error naming
// the file and the field.
#ifndef MOESERVE_TOKENIZER_TOKENIZER_CONFIG_H_
#define MOESERVE_TOKENIZER_TOKENIZER_CONFIG_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moeserve {

struct TokenizerConfig {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> chat_template;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<std::string> tokenizer_class;

  static absl::StatusOr<TokenizerConfig> FromFile(const std::string& path);
  // `source_name` (a path, say) prefixes every error message.
  static absl::StatusOr<TokenizerConfig> FromJson(std::string_view json_text,
                                                  std::string_view source_name);
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_TOKENIZER_CONFIG_H_
