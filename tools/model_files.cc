#include "tools/model_files.h"

#include <sys/stat.h>

namespace moeserve {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<TextFiles> LoadTextFiles(const std::string& dir) {
  TextFiles files;
  const std::string tokenizer = dir + "/tokenizer.json";
  if (Exists(tokenizer)) {
    auto t = Tokenizer::FromFile(tokenizer);
    if (!t.ok()) return t.status();
    files.tokenizer = std::move(*t);
  }
  const std::string config = dir + "/tokenizer_config.json";
  if (Exists(config)) {
    auto c = TokenizerConfig::FromFile(config);
    if (!c.ok()) return c.status();
    files.config = std::move(*c);
  }
  return files;
}

}  // namespace moeserve
