// Normalizers of a tokenizer.json: text-to-text transformations applied to
// the input (between the added tokens) before pre-tokenization, with Hugging
// Face tokenizers' semantics.
//
//   std::vector<std::unique_ptr<Normalizer>> steps;
//   steps.push_back(NewPrependNormalizer("\u2581"));
//   steps.push_back(NewReplaceNormalizer(Pattern::Literal(" "), "\u2581"));
//   auto llama = NewSequenceNormalizer(std::move(steps));
//   llama->Normalize("Hi there");  // "▁Hi▁there"
//
// Normalizers take and return valid UTF-8; they are immutable and thread-safe.
#ifndef MOESERVE_TOKENIZER_NORMALIZER_H_
#define MOESERVE_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pattern.h"

namespace moeserve {

class Normalizer {
 public:
  virtual ~Normalizer() = default;

  std::string Normalize(std::string_view text) const {
    size_t origin_bytes = 0;
    return Apply(text, &origin_bytes);
  }

  // Normalizes `text`, also tracking *origin_bytes: on entry, how many
  // leading bytes of `text` stem from the first character of the whole input
  // (0 if none); on return, the same for the result. HF aligns every
  // normalized byte with its original offsets, and Metaspace's "first"
  // prepend scheme asks whether a piece starts at original offset 0: a
  // character that Prepend or NFKC ("½" -> "1⁄2") derives from the first one
  // still does, one that follows a stripped character does not.
  virtual std::string Apply(std::string_view text, size_t* origin_bytes) const = 0;
};

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };

// Unicode normalization forms (utf8proc).
std::unique_ptr<Normalizer> NewUnicodeNormalizer(UnicodeForm form);
// Per-character full lowercase mapping (Rust's char::to_lowercase).
std::unique_ptr<Normalizer> NewLowercaseNormalizer();
// Removes leading and/or trailing Unicode whitespace.
std::unique_ptr<Normalizer> NewStripNormalizer(bool left, bool right);
// Prepends `prefix` to non-empty text.
std::unique_ptr<Normalizer> NewPrependNormalizer(std::string prefix);
// Replaces every match of `pattern` with `content`.
std::unique_ptr<Normalizer> NewReplaceNormalizer(Pattern pattern, std::string content);
// Applies `steps` in order.
std::unique_ptr<Normalizer> NewSequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_NORMALIZER_H_
