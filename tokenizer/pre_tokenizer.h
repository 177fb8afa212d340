// Pre-tokenizers of a tokenizer.json: they cut normalized text into the
// "words" that the BPE model encodes one at a time, and may rewrite them
// (ByteLevel maps bytes to GPT-2's alphabet, Metaspace turns spaces into
// "▁"). Semantics follow Hugging Face tokenizers; empty pieces are dropped.
//
//   auto split = NewSplitPreTokenizer(*Pattern::Regex("\\s+"),
//                                     SplitBehavior::kRemoved, false);
//   std::vector<PreToken> pieces = {{"a  b", true}};
//   split->PreTokenize(&pieces);  // {"a", true}, {"b", false}
//
// Pre-tokenizers are immutable and thread-safe.
#ifndef MOESERVE_TOKENIZER_PRE_TOKENIZER_H_
#define MOESERVE_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/pattern.h"

namespace moeserve {

struct PreToken {
  std::string text;
  // Leading bytes of `text` that stem from the first character of the input
  // (see Normalizer::Apply): HF's Metaspace "first" prepend scheme prepends
  // only to pieces whose original offset is 0.
  size_t origin_bytes = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces *pieces by their pre-tokenization, in order.
  virtual void PreTokenize(std::vector<PreToken>* pieces) const = 0;
};

// What Split does with the matches of its pattern.
enum class SplitBehavior {
  kRemoved,             // drop them
  kIsolated,            // keep them as pieces of their own
  kMergedWithPrevious,  // append each to the piece before it
  kMergedWithNext,      // prepend each to the piece after it
  kContiguous,          // keep them, runs of adjacent matches as one piece
};

enum class PrependScheme { kFirst, kAlways, kNever };

// Splits [0, size) into the matches of `matches` and the gaps between them
// and groups them by `behavior` (after swapping the two roles if `invert`).
// Returns the [begin, end) ranges of the resulting non-empty pieces.
std::vector<std::pair<size_t, size_t>> SplitByMatches(
    size_t size, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
    bool invert);

// GPT-2 style: optionally prepends a space to each piece that lacks one,
// optionally splits with kGpt2SplitRegex, then maps bytes to GPT-2's alphabet.
std::unique_ptr<PreTokenizer> NewByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizer> NewSplitPreTokenizer(Pattern pattern, SplitBehavior behavior,
                                                   bool invert);
// SentencePiece style: spaces become `replacement`, which is prepended per
// `scheme` and (if `split`) starts each new piece.
std::unique_ptr<PreTokenizer> NewMetaspacePreTokenizer(std::string replacement,
                                                       PrependScheme scheme, bool split);
// Isolates each digit, or each run of digits (Unicode numeric characters).
std::unique_ptr<PreTokenizer> NewDigitsPreTokenizer(bool individual_digits);
std::unique_ptr<PreTokenizer> NewSequencePreTokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> steps);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_PRE_TOKENIZER_H_
