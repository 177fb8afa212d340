#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <utility>

#include "tokenizer/utf8.h"

namespace moeserve {

Tokenizer::Tokenizer(Parts parts)
    : parts_(std::move(parts)), added_(std::move(parts_.added_tokens), parts_.normalizer.get()) {
  id_limit_ = parts_.model != nullptr ? parts_.model->IdLimit() : 0;
  for (const AddedToken& token : added_.tokens()) {
    id_limit_ = std::max(id_limit_, token.id + 1);
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<PreToken> words;
  for (AddedPiece& piece : added_.Split(text, parts_.normalizer.get())) {
    if (piece.id != AddedPiece::kNoId) {
      ids.push_back(piece.id);
      continue;
    }
    words.clear();
    words.push_back(PreToken{std::move(piece.text), piece.origin_bytes});
    if (parts_.pre_tokenizer != nullptr) parts_.pre_tokenizer->PreTokenize(&words);
    for (const PreToken& word : words) parts_.model->Tokenize(word.text, &ids);
  }
  if (parts_.post_processor != nullptr) {
    parts_.post_processor->Process(&ids, add_special_tokens);
  }
  return ids;
}

const std::string* Tokenizer::TokenString(int32_t id) const {
  if (const std::string* added = added_.IdToToken(id)) return added;
  return parts_.model->IdToToken(id);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* token = TokenString(id);
    if (token == nullptr) continue;
    if (skip_special_tokens && added_.IsSpecialContent(*token)) continue;
    tokens.push_back(*token);
  }
  return RunDecoder(parts_.decoder.get(), std::move(tokens));
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto id = added_.FindByContent(token)) return id;
  return parts_.model->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = TokenString(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

bool Tokenizer::IsSpecialToken(int32_t id) const {
  const AddedToken* added = added_.FindById(id);
  return added != nullptr && added->special;
}

bool Tokenizer::DecodeDrops(int32_t id, bool skip_special_tokens) const {
  const std::string* token = TokenString(id);
  return token == nullptr || (skip_special_tokens && added_.IsSpecialContent(*token));
}

bool Tokenizer::IsByteFallbackToken(int32_t id) const {
  if (parts_.decoder == nullptr || !parts_.decoder->UsesByteFallback()) {
    return false;
  }
  const std::string* token = TokenString(id);
  return token != nullptr && ParseByteFallbackToken(*token) >= 0;
}

std::vector<int32_t> Tokenizer::SpecialTokenIds() const {
  std::vector<int32_t> ids;
  for (const AddedToken& token : added_.tokens()) {
    if (token.special) ids.push_back(token.id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace moeserve
