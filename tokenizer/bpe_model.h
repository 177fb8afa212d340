// The BPE model of a tokenizer.json: turns one pre-tokenized word into token
// ids by starting from its characters and applying merges by rank, exactly as
// Hugging Face tokenizers' BPE does (lowest rank first, leftmost on ties),
// with byte fallback ("<0xE4>" tokens), an unknown token (optionally fused)
// and a continuing-subword prefix / end-of-word suffix.
//
//   BpeOptions options;
//   options.byte_fallback = true;
//   MOE_ASSIGN_OR_RETURN(auto bpe, BpeModel::Create(vocab, merges, options));
//   std::vector<int32_t> ids;
//   bpe->Tokenize("▁hello", &ids);
//
// Tokenize is thread-safe: finished words are cached (up to kCacheCapacity
// words shorter than kCacheMaxWordBytes) behind a reader/writer lock.
//
// SentencePiece-converted tokenizers (Llama-2, Mistral) have no
// pre-tokenizer, so a whole text is one "word". When no vocabulary token has
// "▁" after another character (checked at load), no merge can cross such a
// "▁", and the word is cut before each one: same ids, linear time, cacheable
// pieces.
#ifndef MOESERVE_TOKENIZER_BPE_MODEL_H_
#define MOESERVE_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tokenizer/string_util.h"

namespace moeserve {

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  // A word that is itself in the vocabulary becomes that token, merges or not.
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  static constexpr size_t kCacheCapacity = 10000;
  static constexpr size_t kCacheMaxWordBytes = 256;

  // `vocab` maps token strings to ids (ids need not be dense); `merges` are in
  // rank order. Errors name the offending merge (by index) or token, and are
  // meant to be prefixed with where the model came from.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::vector<std::pair<std::string, int32_t>> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // Appends the ids of `word` (valid UTF-8, not empty) to *ids.
  void Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token with this id, or null.
  const std::string* IdToToken(int32_t id) const;
  // One more than the largest id in the vocabulary.
  int32_t IdLimit() const { return static_cast<int32_t>(id_to_token_.size()); }
  size_t VocabSize() const { return token_to_id_.size(); }

 private:
  struct MergeResult {
    uint32_t rank;
    int32_t new_id;
  };

  BpeModel() = default;
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void TokenizeUncut(std::string_view word, std::vector<int32_t>* ids) const;
  void MergeWord(std::string_view word, std::vector<int32_t>* ids) const;

  BpeOptions options_;
  std::optional<int32_t> unk_id_;
  StringMap<int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_present_;
  absl::flat_hash_map<uint64_t, MergeResult> merges_;
  // Ids of the "<0x00>".."<0xFF>" tokens, -1 where absent.
  int32_t byte_tokens_[256];
  // Whether words may be cut before each "▁" that follows another character.
  bool cut_before_metaspace_ = false;

  mutable absl::Mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_ ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_BPE_MODEL_H_
