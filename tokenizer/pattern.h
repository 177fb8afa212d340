// The `pattern` of tokenizer.json's Split pre-tokenizer and Replace
// normalizer/decoder: either a literal string or a regular expression.
//
// Hugging Face tokenizers compiles regexes with Oniguruma in Ruby syntax; we
// use PCRE2 (PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, since Ruby's ^ and $
// are line anchors) after rewriting what Ruby spells differently: \s, \w
// and \h become Oniguruma's sets (PCRE2's \s also matches U+180E, its \w
// lacks combining marks, its \h is horizontal space), and the inline option
// "m" becomes PCRE2's "s". Known remaining difference: \b and negated sets
// inside a class (`[^\S]`) use PCRE2's definitions.
//
//   MOE_ASSIGN_OR_RETURN(Pattern p, Pattern::Regex("\\s+"));
//   for (auto [begin, end] : p.FindAll(text)) ...
//
// A Pattern is immutable after creation and safe to share between threads.
#ifndef MOESERVE_TOKENIZER_PATTERN_H_
#define MOESERVE_TOKENIZER_PATTERN_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve {

namespace internal {
class CompiledRegex;
}  // namespace internal

class Pattern {
 public:
  using Match = std::pair<size_t, size_t>;  // [begin, end) byte offsets

  // Matches `text` literally. An empty literal matches (emptily) at every
  // character boundary, as in HF.
  static Pattern Literal(std::string text);
  // Compiles an Oniguruma-syntax regex (as tokenizer.json holds them); the
  // error names the PCRE2 message and offset.
  static absl::StatusOr<Pattern> Regex(std::string_view onig_regex);

  // Non-overlapping matches from left to right in valid UTF-8 `text`. An
  // empty match right where the previous match ended is skipped, as Rust's
  // and Oniguruma's find_iter do.
  std::vector<Match> FindAll(std::string_view text) const;

  // `text` with every match replaced by `replacement` (taken literally).
  std::string ReplaceAll(std::string_view text, std::string_view replacement) const;

 private:
  Pattern() = default;

  std::string literal_;
  std::shared_ptr<const internal::CompiledRegex> regex_;
};

// The PCRE2 spelling of Oniguruma (Ruby syntax) regex `regex`, as described
// above. Exposed for tests.
std::string OnigToPcre2(std::string_view regex);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_PATTERN_H_
