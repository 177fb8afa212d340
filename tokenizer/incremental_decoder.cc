#include "tokenizer/incremental_decoder.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

bool EndsWithReplacement(const std::string& text) {
  return text.size() >= kReplacementUtf8.size() &&
         std::string_view(text).substr(text.size() - kReplacementUtf8.size()) == kReplacementUtf8;
}

// What `text` adds after `prefix`. Normally `prefix` is a prefix of `text`;
// if a decoder ever breaks that, fall back to the longest common prefix, cut
// at a character boundary, so that the result is still valid UTF-8.
std::string Suffix(const std::string& prefix, const std::string& text) {
  size_t common = 0;
  const size_t limit = std::min(prefix.size(), text.size());
  while (common < limit && prefix[common] == text[common]) ++common;
  if (common < prefix.size()) {
    while (common > 0 && (static_cast<unsigned char>(text[common]) & 0xC0) == 0x80) {
      --common;
    }
  }
  return text.substr(common);
}

}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens,
                                       absl::Span<const int32_t> context)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {
  const size_t keep = std::min(context.size(), kContextTokens);
  ids_.assign(context.end() - keep, context.end());
  read_offset_ = ids_.size();
}

std::string IncrementalDecoder::Append(int32_t id) {
  ids_.push_back(id);
  // A trailing run of byte-fallback tokens decodes as a whole (a later byte
  // can turn the run into U+FFFDs), so it waits for the run to end; ids that
  // Decode drops do not end a run.
  size_t end = ids_.size();
  while (end > read_offset_ && (tokenizer_->IsByteFallbackToken(ids_[end - 1]) ||
                                tokenizer_->DecodeDrops(ids_[end - 1], skip_special_tokens_))) {
    --end;
  }
  if (end == read_offset_) return std::string();
  const absl::Span<const int32_t> all(ids_);
  const std::string prefix_text = tokenizer_->Decode(
      all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_tokens_);
  const std::string new_text =
      tokenizer_->Decode(all.subspan(prefix_offset_, end - prefix_offset_), skip_special_tokens_);
  // Hold back text ending in U+FFFD: it may be an incomplete character that
  // the next id completes.
  if (new_text.size() <= prefix_text.size() || EndsWithReplacement(new_text)) {
    return std::string();
  }
  prefix_offset_ = read_offset_;
  read_offset_ = end;
  return Suffix(prefix_text, new_text);
}

std::string IncrementalDecoder::Flush() {
  const absl::Span<const int32_t> all(ids_);
  const std::string prefix_text = tokenizer_->Decode(
      all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_tokens_);
  const std::string new_text =
      tokenizer_->Decode(all.subspan(prefix_offset_), skip_special_tokens_);
  prefix_offset_ = read_offset_ = ids_.size();
  if (new_text.size() <= prefix_text.size()) return std::string();
  return Suffix(prefix_text, new_text);
}

}  // namespace moeserve
