#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm form) {
    switch (form) {
      case UnicodeForm::kNfc:
        options_ = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
        break;
      case UnicodeForm::kNfd:
        options_ = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
        break;
      case UnicodeForm::kNfkc:
        options_ = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
      case UnicodeForm::kNfkd:
        options_ = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
  }

  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    std::string out = Map(text);
    if (*origin_bytes > 0) {
      // What the leading characters become; if they composed with what
      // follows, the composed character stems from them.
      const std::string head = Map(text.substr(0, *origin_bytes));
      if (std::string_view(out).substr(0, head.size()) == head) {
        *origin_bytes = head.size();
      } else {
        *origin_bytes = out.empty() ? 0 : Utf8CharLength(static_cast<unsigned char>(out[0]));
      }
    }
    return out;
  }

 private:
  std::string Map(std::string_view text) const {
    // ASCII is invariant under every normalization form.
    bool ascii = true;
    for (char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
    if (ascii) return std::string(text);
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &out,
                                            static_cast<utf8proc_option_t>(options_));
    if (n < 0) return std::string(text);  // invalid input: leave it alone
    std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
    return result;
  }

  int options_ = 0;
};

class LowercaseNormalizer : public Normalizer {
 public:
  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    std::string out;
    out.reserve(text.size());
    size_t origin_out = 0;
    for (size_t i = 0; i < text.size();) {
      const bool origin = i < *origin_bytes;
      AppendLowercase(DecodeValidUtf8(text, &i), &out);
      if (origin) origin_out = out.size();
    }
    *origin_bytes = origin_out;
    return out;
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}

  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    size_t begin = 0;
    size_t end = text.size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!IsUnicodeWhitespace(DecodeValidUtf8(text, &next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
          --start;
        }
        size_t pos = start;
        if (!IsUnicodeWhitespace(DecodeValidUtf8(text, &pos))) break;
        end = start;
      }
    }
    *origin_bytes = *origin_bytes > begin ? std::min(*origin_bytes, end) - begin : 0;
    return std::string(text.substr(begin, end - begin));
  }

 private:
  bool left_;
  bool right_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}

  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    if (text.empty()) return std::string();
    // The prefix is aligned with the first character, as in HF.
    if (*origin_bytes > 0) *origin_bytes += prefix_.size();
    std::string out = prefix_;
    out.append(text);
    return out;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    // A replacement is aligned with the first character it replaces.
    const size_t origin = *origin_bytes;
    size_t origin_out = 0;
    std::string out;
    out.reserve(text.size());
    size_t prev = 0;
    for (const auto& [begin, end] : pattern_.FindAll(text)) {
      if (prev < origin) origin_out = out.size() + std::min(begin, origin) - prev;
      out.append(text.substr(prev, begin - prev));
      out.append(content_);
      if (begin < origin && begin < end) origin_out = out.size();
      prev = end;
    }
    if (prev < origin) origin_out = out.size() + std::min(text.size(), origin) - prev;
    out.append(text.substr(prev));
    *origin_bytes = origin_out;
    return out;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}

  std::string Apply(std::string_view text, size_t* origin_bytes) const override {
    std::string current(text);
    for (const auto& step : steps_) current = step->Apply(current, origin_bytes);
    return current;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> NewUnicodeNormalizer(UnicodeForm form) {
  return std::make_unique<UnicodeNormalizer>(form);
}

std::unique_ptr<Normalizer> NewLowercaseNormalizer() {
  return std::make_unique<LowercaseNormalizer>();
}

std::unique_ptr<Normalizer> NewStripNormalizer(bool left, bool right) {
  return std::make_unique<StripNormalizer>(left, right);
}

std::unique_ptr<Normalizer> NewPrependNormalizer(std::string prefix) {
  return std::make_unique<PrependNormalizer>(std::move(prefix));
}

std::unique_ptr<Normalizer> NewReplaceNormalizer(Pattern pattern, std::string content) {
  return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
}

std::unique_ptr<Normalizer> NewSequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) {
  return std::make_unique<SequenceNormalizer>(std::move(steps));
}

}  // namespace moeserve
