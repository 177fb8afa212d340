// The added tokens of a tokenizer.json ("<|im_start|>", "<s>", ...): they are
// cut out of the input before anything else runs, so that they always become
// their own id. Follows Hugging Face tokenizers' AddedVocabulary: tokens with
// `normalized: false` are found in the raw text, the remaining text is
// normalized piece by piece, then tokens with `normalized: true` are found in
// it (their content normalized likewise). Matching is leftmost-longest;
// `single_word` rejects a match glued to a word character, `lstrip`/`rstrip`
// swallow the whitespace beside it.
//
//   AddedVocabulary added(tokens, normalizer.get());
//   for (const AddedPiece& p : added.Split("<s>Hi", normalizer.get())) ...
//   // {"<s>", id 1}, {"Hi" normalized, kNoId}
//
// Immutable after construction and thread-safe.
#ifndef MOESERVE_TOKENIZER_ADDED_VOCABULARY_H_
#define MOESERVE_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/string_util.h"

namespace moeserve {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// A piece of input after added tokens were cut out: either an added token
// (`id` set) or normalized text still to pre-tokenize and encode.
struct AddedPiece {
  static constexpr int32_t kNoId = -1;
  std::string text;
  int32_t id = kNoId;
  // Leading bytes of `text` that stem from the input's first character.
  size_t origin_bytes = 0;
};

class AddedVocabulary {
 public:
  // `normalizer` (may be null) normalizes the content of normalized tokens;
  // it is not retained. Later tokens with the same content replace earlier.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // Cuts `text` (valid UTF-8) into added tokens and normalized text pieces.
  // Empty text pieces are dropped.
  std::vector<AddedPiece> Split(std::string_view text, const Normalizer* normalizer) const;

  const AddedToken* FindById(int32_t id) const;
  // The token string of `id` as HF's id_to_token gives it: the content, or
  // for a `normalized` token its normalized content. Null if not added.
  const std::string* IdToToken(int32_t id) const;
  std::optional<int32_t> FindByContent(std::string_view content) const;
  // Whether `content` is the content of a special added token.
  bool IsSpecialContent(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie over token contents, for leftmost-longest matching.
  struct Trie {
    struct Node {
      absl::flat_hash_map<unsigned char, int> children;
      int token = -1;  // index into tokens_
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void Insert(std::string_view key, int token);
  };
  struct Match {
    size_t begin;
    size_t end;
    int token;
  };

  // HF's find_matches: non-overlapping leftmost-longest matches, filtered by
  // single_word and widened by lstrip/rstrip.
  std::vector<Match> FindMatches(std::string_view text, const Trie& trie) const;

  std::vector<AddedToken> tokens_;
  std::vector<std::string> token_strings_;  // parallel to tokens_
  absl::flat_hash_map<int32_t, int> by_id_;
  StringMap<int> by_content_;
  StringSet special_contents_;
  Trie raw_trie_;         // tokens with normalized == false
  Trie normalized_trie_;  // tokens with normalized == true, content normalized
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_ADDED_VOCABULARY_H_
