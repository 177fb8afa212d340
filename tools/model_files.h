// The text side of a checkpoint directory: tokenizer.json and
// tokenizer_config.json, both optional (a checkpoint served from token ids
// needs neither).
#ifndef MOESERVE_TOOLS_MODEL_FILES_H_
#define MOESERVE_TOOLS_MODEL_FILES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace moeserve {

struct TextFiles {
  std::unique_ptr<Tokenizer> tokenizer;  // null when DIR has no tokenizer.json
  TokenizerConfig config;                // empty when no tokenizer_config.json
};

// Errors only for files that exist but are malformed.
absl::StatusOr<TextFiles> LoadTextFiles(const std::string& dir);

}  // namespace moeserve

#endif  // MOESERVE_TOOLS_MODEL_FILES_H_
