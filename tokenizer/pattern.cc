#include "tokenizer/pattern.h"

#include <pcre2.h>

#include "absl/status/status.h"
#include "tokenizer/string_util.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace internal {

// A compiled PCRE2 pattern (JIT-compiled where the platform allows).
class CompiledRegex {
 public:
  explicit CompiledRegex(pcre2_code* code) : code_(code) {}
  ~CompiledRegex() { pcre2_code_free(code_); }
  CompiledRegex(const CompiledRegex&) = delete;
  CompiledRegex& operator=(const CompiledRegex&) = delete;

  const pcre2_code* code() const { return code_; }

 private:
  pcre2_code* code_;
};

namespace {

// Per-thread match state: PCRE2 match data is not shareable between threads,
// and the JIT gets a stack large enough for long runs of repeated groups.
struct MatchState {
  MatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context != nullptr && jit_stack != nullptr) {
      pcre2_jit_stack_assign(context, nullptr, jit_stack);
    }
  }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
  pcre2_match_data* data;
  pcre2_match_context* context;
  pcre2_jit_stack* jit_stack;
};

MatchState& ThreadMatchState() {
  thread_local MatchState state;
  return state;
}

}  // namespace
}  // namespace internal

Pattern Pattern::Literal(std::string text) {
  Pattern p;
  p.literal_ = std::move(text);
  return p;
}

namespace {

// Oniguruma's (Ruby syntax) escapes whose PCRE2 spelling differs, as the
// contents of a character class:
//   \s  U+0009..U+000D, U+0085 and Zs/Zl/Zp (PCRE2's also has U+180E);
//   \w  letters, marks, numbers, connector punctuation (PCRE2's lacks marks);
//   \h  a hexadecimal digit (PCRE2's is horizontal space).
constexpr std::string_view kOnigSpace =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
    "\\x{202f}\\x{205f}\\x{3000}";
constexpr std::string_view kOnigWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
constexpr std::string_view kOnigHex = "0-9a-fA-F";

std::string_view OnigClass(char escape) {
  switch (escape) {
    case 's':
    case 'S':
      return kOnigSpace;
    case 'w':
    case 'W':
      return kOnigWord;
    case 'h':
    case 'H':
      return kOnigHex;
    default:
      return {};
  }
}

}  // namespace

std::string OnigToPcre2(std::string_view regex) {
  std::string out;
  out.reserve(regex.size() + 64);
  bool in_class = false;
  size_t class_start = 0;  // index just after '[' or "[^"
  for (size_t i = 0; i < regex.size(); ++i) {
    const char c = regex[i];
    if (c == '\\' && i + 1 < regex.size()) {
      const char e = regex[++i];
      const std::string_view set = OnigClass(e);
      const bool negated = e == 'S' || e == 'W' || e == 'H';
      if (set.empty() || (in_class && negated)) {
        out.push_back('\\');  // a negated set inside a class stays PCRE2's
        out.push_back(e);
      } else if (in_class) {
        out.append(set);
      } else {
        out.append(negated ? "[^" : "[").append(set).append("]");
      }
      continue;
    }
    out.push_back(c);
    if (in_class) {
      if (c == '[' && i + 1 < regex.size() && regex[i + 1] == ':') {
        // A POSIX class such as [:alpha:]: copy through its ":]".
        const size_t close = regex.find(":]", i + 2);
        if (close != std::string_view::npos) {
          out.append(regex.substr(i + 1, close + 2 - (i + 1)));
          i = close + 1;
        }
      } else if (c == ']' && i != class_start) {
        in_class = false;  // a ']' right after '[' or "[^" is literal
      }
      continue;
    }
    if (c == '[') {
      in_class = true;
      if (i + 1 < regex.size() && regex[i + 1] == '^') out.push_back(regex[++i]);
      class_start = i + 1;
    } else if (c == '(' && i + 1 < regex.size() && regex[i + 1] == '?') {
      // Inline options: Ruby's "m" (dot matches newline) is PCRE2's "s".
      size_t j = i + 2;
      while (j < regex.size() &&
             std::string_view("imx-").find(regex[j]) != std::string_view::npos) {
        ++j;
      }
      if (j > i + 2 && j < regex.size() && (regex[j] == ':' || regex[j] == ')')) {
        out.push_back('?');
        for (size_t k = i + 2; k < j; ++k) out.push_back(regex[k] == 'm' ? 's' : regex[k]);
        i = j - 1;
      }
    }
  }
  return out;
}

absl::StatusOr<Pattern> Pattern::Regex(std::string_view onig_regex) {
  const std::string regex = OnigToPcre2(onig_regex);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(Concat("bad regex \"", onig_regex,
                                             "\": ", reinterpret_cast<const char*>(message),
                                             " at offset ", error_offset));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to interpreting
  Pattern p;
  p.regex_ = std::make_shared<internal::CompiledRegex>(code);
  return p;
}

std::vector<Pattern::Match> Pattern::FindAll(std::string_view text) const {
  std::vector<Match> matches;
  if (regex_ == nullptr) {
    if (literal_.empty()) {
      // Like Rust's str::match_indices(""): an empty match at every
      // character boundary, both ends included.
      for (size_t pos = 0;; pos += Utf8CharLength(static_cast<unsigned char>(text[pos]))) {
        matches.emplace_back(pos, pos);
        if (pos >= text.size()) break;
      }
      return matches;
    }
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, pos + literal_.size())) {
      matches.emplace_back(pos, pos + literal_.size());
    }
    return matches;
  }
  // PCRE2 is told not to re-check UTF-8 on every call (that would make this
  // loop quadratic), so check once here.
  if (!IsValidUtf8(text)) return matches;
  internal::MatchState& state = internal::ThreadMatchState();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t search_from = 0;
  size_t last_match_end = std::string_view::npos;
  while (search_from <= text.size()) {
    const int rc = pcre2_match(regex_->code(), subject, text.size(), search_from,
                               PCRE2_NO_UTF_CHECK, state.data, state.context);
    if (rc < 0) break;  // no match, or a resource limit: stop
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (begin == end && end == last_match_end) {
      // An empty match where the previous one ended: step over a character.
      if (search_from >= text.size()) break;
      search_from += Utf8CharLength(static_cast<unsigned char>(text[search_from]));
      continue;
    }
    matches.emplace_back(begin, end);
    last_match_end = end;
    search_from = end;
  }
  return matches;
}

std::string Pattern::ReplaceAll(std::string_view text, std::string_view replacement) const {
  std::string out;
  out.reserve(text.size());
  size_t prev = 0;
  for (const auto& [begin, end] : FindAll(text)) {
    out.append(text.substr(prev, begin - prev));
    out.append(replacement);
    prev = end;
  }
  out.append(text.substr(prev));
  return out;
}

}  // namespace moeserve
