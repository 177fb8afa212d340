// GPT-2's byte-level alphabet: the reversible map from the 256 byte values to
// 256 printable Unicode characters that byte-level BPE vocabularies are
// written in ("Ġ" is the space byte 0x20, "Ċ" is 0x0A, printable ASCII maps
// to itself).
//
//   std::string word = ByteLevelEncode("Hi there");  // "HiĠthere"
//   int byte = ByteLevelDecodeChar(U'Ġ');             // 0x20
#ifndef MOESERVE_TOKENIZER_BYTE_LEVEL_H_
#define MOESERVE_TOKENIZER_BYTE_LEVEL_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace moeserve {

// The UTF-8 encoding of the character that stands for `byte`.
std::string_view ByteLevelChar(uint8_t byte);

// The byte that character `c` stands for, or -1 if `c` is not in the
// alphabet.
int ByteLevelDecodeChar(char32_t c);

// Maps every byte of `bytes` to its character.
std::string ByteLevelEncode(std::string_view bytes);

// GPT-2's pre-tokenization regex, used by the ByteLevel pre-tokenizer.
inline constexpr std::string_view kGpt2SplitRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_BYTE_LEVEL_H_
