#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <string_view>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

using Range = std::pair<size_t, size_t>;

// Applies `split_one` to every piece, keeping the output's order.
template <typename F>
void SplitEach(std::vector<PreToken>* pieces, F split_one) {
  std::vector<PreToken> out;
  out.reserve(pieces->size());
  for (PreToken& piece : *pieces) split_one(std::move(piece), &out);
  *pieces = std::move(out);
}

// Origin bytes of the part [begin, end) of a piece with `origin` of them.
size_t SubOrigin(size_t origin, size_t begin, size_t end) {
  return origin > begin ? std::min(origin, end) - begin : 0;
}

// Appends the pieces of `parent` cut at `ranges`.
void EmitRanges(const PreToken& parent, const std::vector<Range>& ranges,
                std::vector<PreToken>* out) {
  for (const auto& [begin, end] : ranges) {
    out->push_back(PreToken{parent.text.substr(begin, end - begin),
                            SubOrigin(parent.origin_bytes, begin, end)});
  }
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? Pattern::Regex(kGpt2SplitRegex).value() : Pattern::Literal("")),
        use_regex_(use_regex) {}

  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [&](PreToken piece, std::vector<PreToken>* out) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text[0] != ' ')) {
        piece.text.insert(piece.text.begin(), ' ');
        if (piece.origin_bytes > 0) ++piece.origin_bytes;
      }
      const std::string_view text = piece.text;
      const auto emit = [&](size_t begin, size_t end) {
        const size_t origin = SubOrigin(piece.origin_bytes, begin, end);
        out->push_back(PreToken{ByteLevelEncode(text.substr(begin, end - begin)),
                                ByteLevelEncode(text.substr(begin, origin)).size()});
      };
      if (!use_regex_) {
        if (!text.empty()) emit(0, text.size());
        return;
      }
      for (const auto& [begin, end] :
           SplitByMatches(text.size(), regex_.FindAll(text), SplitBehavior::kIsolated, false)) {
        emit(begin, end);
      }
    });
  }

 private:
  bool add_prefix_space_;
  Pattern regex_;
  bool use_regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [&](PreToken piece, std::vector<PreToken>* out) {
      EmitRanges(
          piece,
          SplitByMatches(piece.text.size(), pattern_.FindAll(piece.text), behavior_, invert_), out);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        space_(Pattern::Literal(" ")),
        delimiter_(Pattern::Literal(replacement_)) {}

  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [&](PreToken piece, std::vector<PreToken>* out) {
      std::string text = space_.ReplaceAll(piece.text, replacement_);
      size_t origin =
          space_
              .ReplaceAll(std::string_view(piece.text).substr(0, piece.origin_bytes), replacement_)
              .size();
      const bool starts_with_replacement =
          std::string_view(text).substr(0, replacement_.size()) == replacement_;
      const bool prepend =
          !starts_with_replacement &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && origin > 0));
      if (prepend) {
        text.insert(0, replacement_);
        if (origin > 0) origin += replacement_.size();
      }
      PreToken rewritten{std::move(text), origin};
      if (!split_) {
        if (!rewritten.text.empty()) out->push_back(std::move(rewritten));
        return;
      }
      EmitRanges(rewritten,
                 SplitByMatches(rewritten.text.size(), delimiter_.FindAll(rewritten.text),
                                SplitBehavior::kMergedWithNext, false),
                 out);
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Pattern space_;
  Pattern delimiter_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}

  void PreTokenize(std::vector<PreToken>* pieces) const override {
    SplitEach(pieces, [&](PreToken piece, std::vector<PreToken>* out) {
      // Every numeric character is a match of its own (HF's char predicate).
      std::vector<Range> matches;
      const std::string& text = piece.text;
      for (size_t i = 0; i < text.size();) {
        const size_t begin = i;
        if (IsUnicodeNumeric(DecodeValidUtf8(text, &i))) {
          matches.emplace_back(begin, i);
        }
      }
      EmitRanges(piece,
                 SplitByMatches(text.size(), matches,
                                individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
                                false),
                 out);
    });
  }

 private:
  bool individual_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}

  void PreTokenize(std::vector<PreToken>* pieces) const override {
    for (const auto& step : steps_) step->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace

std::vector<Range> SplitByMatches(size_t size, const std::vector<Range>& matches,
                                  SplitBehavior behavior, bool invert) {
  // The whole text as alternating gaps and matches (HF's find_matches).
  std::vector<std::pair<Range, bool>> segments;
  size_t prev = 0;
  for (const Range& m : matches) {
    if (m.first != prev) segments.push_back({{prev, m.first}, false});
    segments.push_back({m, true});
    prev = m.second;
  }
  if (prev != size || segments.empty()) segments.push_back({{prev, size}, false});
  if (invert) {
    for (auto& segment : segments) segment.second = !segment.second;
  }

  std::vector<Range> pieces;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& [range, is_match] : segments) pieces.push_back(range);
      break;
    case SplitBehavior::kRemoved:
      for (const auto& [range, is_match] : segments) {
        if (!is_match) pieces.push_back(range);
      }
      break;
    case SplitBehavior::kContiguous:
      for (const auto& [range, is_match] : segments) {
        if (is_match == previous_match && !pieces.empty()) {
          pieces.back().second = range.second;
        } else {
          pieces.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& [range, is_match] : segments) {
        if (is_match && !previous_match && !pieces.empty()) {
          pieces.back().second = range.second;
        } else {
          pieces.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        const auto& [range, is_match] = *it;
        if (is_match && !previous_match && !pieces.empty()) {
          pieces.back().first = range.first;
        } else {
          pieces.push_back(range);
        }
        previous_match = is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(),
                              [](const Range& r) { return r.first == r.second; }),
               pieces.end());
  return pieces;
}

std::unique_ptr<PreTokenizer> NewByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizer> NewSplitPreTokenizer(Pattern pattern, SplitBehavior behavior,
                                                   bool invert) {
  return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
}

std::unique_ptr<PreTokenizer> NewMetaspacePreTokenizer(std::string replacement,
                                                       PrependScheme scheme, bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}

std::unique_ptr<PreTokenizer> NewDigitsPreTokenizer(bool individual_digits) {
  return std::make_unique<DigitsPreTokenizer>(individual_digits);
}

std::unique_ptr<PreTokenizer> NewSequencePreTokenizer(
    std::vector<std::unique_ptr<PreTokenizer>> steps) {
  return std::make_unique<SequencePreTokenizer>(std::move(steps));
}

}  // namespace moeserve
