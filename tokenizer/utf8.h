// UTF-8 helpers for the tokenizer: decoding with the replacement rules of
// Rust's String::from_utf8_lossy (which WHATWG's TextDecoder shares: each
// maximal ill-formed subpart becomes one U+FFFD), and the few Unicode
// character classes that Hugging Face tokenizers consults.
//
//   std::string text = SanitizeUtf8(raw_bytes);   // always valid UTF-8
//   for (size_t i = 0; i < text.size();) {
//     char32_t c = DecodeValidUtf8(text, &i);
//     ...
//   }
//
// All functions are pure and thread-safe.
#ifndef MOESERVE_TOKENIZER_UTF8_H_
#define MOESERVE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeserve {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length in bytes (1-4) of the well-formed UTF-8 sequence that starts at
// bytes[pos], or 0 if there is none. When 0 is returned and `bad_len` is not
// null, *bad_len is the length (>= 1) of the maximal ill-formed subpart that
// from_utf8_lossy replaces with a single U+FFFD. Requires pos < bytes.size().
size_t Utf8SequenceLength(std::string_view bytes, size_t pos, size_t* bad_len = nullptr);

bool IsValidUtf8(std::string_view bytes);

// `bytes` with every maximal ill-formed subpart replaced by U+FFFD, exactly as
// Rust's String::from_utf8_lossy and JS's `new TextDecoder().decode()` do.
std::string SanitizeUtf8(std::string_view bytes);

// Decodes the character at text[*pos] of *valid* UTF-8 and advances *pos past
// it. Requires *pos < text.size() and a character boundary at *pos.
char32_t DecodeValidUtf8(std::string_view text, size_t* pos);

// Byte length of the character whose first byte is `lead` (valid UTF-8).
inline size_t Utf8CharLength(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void AppendUtf8(char32_t c, std::string* out);
std::string EncodeUtf8(char32_t c);

// Number of characters in valid UTF-8 `text`.
size_t CountUtf8Chars(std::string_view text);

// Rust's char::is_whitespace (Unicode White_Space).
bool IsUnicodeWhitespace(char32_t c);

// Python's str.isspace (what Jinja's `strip()` removes): White_Space plus
// U+001C..U+001F.
bool IsPythonWhitespace(char32_t c);

// Rust's char::is_numeric (general category Nd, Nl or No).
bool IsUnicodeNumeric(char32_t c);

// A character of Rust regex's Unicode `\w`: letters, marks, decimal digits,
// letter numbers, connector punctuation, ZWNJ/ZWJ, and the circled letters
// (Other_Alphabetic symbols).
bool IsUnicodeWordChar(char32_t c);

// Appends Rust's char::to_lowercase of `c` (full case mapping: U+0130 'İ'
// becomes "i̇", two characters).
void AppendLowercase(char32_t c, std::string* out);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_UTF8_H_
