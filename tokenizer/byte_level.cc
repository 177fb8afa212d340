#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

struct Tables {
  Tables() {
    // Printable bytes keep their code point; the others get 256, 257, ... in
    // byte order (bytes_to_unicode() of GPT-2's encoder.py).
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      chars[b] = EncodeUtf8(c);
      code_points[b] = c;
    }
    reverse.fill(-1);
    for (int b = 0; b < 256; ++b) reverse[code_points[b]] = b;
  }
  std::array<std::string, 256> chars;
  std::array<char32_t, 256> code_points;
  std::array<int, 324> reverse;  // code points stay below 256 + 68
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

std::string_view ByteLevelChar(uint8_t byte) { return GetTables().chars[byte]; }

int ByteLevelDecodeChar(char32_t c) {
  const Tables& t = GetTables();
  return c < t.reverse.size() ? t.reverse[c] : -1;
}

std::string ByteLevelEncode(std::string_view bytes) {
  const Tables& t = GetTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char b : bytes) out.append(t.chars[static_cast<uint8_t>(b)]);
  return out;
}

}  // namespace moeserve
