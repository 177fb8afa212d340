// Decoders of a tokenizer.json: they turn the token strings of some ids back
// into text, with Hugging Face tokenizers' decode_chain semantics (each step
// maps the list of strings to a new list; the result is their
// concatenation).
//
//   std::vector<std::unique_ptr<Decoder>> steps;
//   steps.push_back(NewReplaceDecoder(Pattern::Literal("▁"), " "));
//   steps.push_back(NewByteFallbackDecoder());
//   steps.push_back(NewFuseDecoder());
//   steps.push_back(NewStripDecoder(U' ', 1, 0));
//   auto llama = NewSequenceDecoder(std::move(steps));
//   RunDecoder(*llama, {"▁Hello", "<0x21>"});  // "Hello!"
//
// Output is always valid UTF-8: byte sequences that do not form characters
// become U+FFFD (ByteLevel: as Rust's from_utf8_lossy; ByteFallback: one per
// byte, as HF). Immutable and thread-safe.
#ifndef MOESERVE_TOKENIZER_DECODER_H_
#define MOESERVE_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pattern.h"
#include "tokenizer/pre_tokenizer.h"

namespace moeserve {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
  // Whether a ByteFallback step is part of this decoder: then a run of
  // "<0xXX>" tokens decodes as a whole (valid UTF-8, or one U+FFFD per byte).
  virtual bool UsesByteFallback() const { return false; }
};

// The byte that a ByteFallback token such as "<0xE4>" stands for, or -1.
int ParseByteFallbackToken(std::string_view token);

// Concatenation of the decoded chain (the tokens joined by " " when
// `decoder` is null, as HF does without a decoder).
std::string RunDecoder(const Decoder* decoder, std::vector<std::string> tokens);

// GPT-2 byte-level alphabet back to bytes; tokens with characters outside the
// alphabet contribute their UTF-8 bytes unchanged.
std::unique_ptr<Decoder> NewByteLevelDecoder();
// `replacement` becomes a space, except in the first token unless `scheme`
// is kNever (where it is dropped).
std::unique_ptr<Decoder> NewMetaspaceDecoder(std::string replacement, PrependScheme scheme);
std::unique_ptr<Decoder> NewReplaceDecoder(Pattern pattern, std::string content);
// Runs of "<0xXX>" tokens become the bytes they name.
std::unique_ptr<Decoder> NewByteFallbackDecoder();
// Joins all tokens into one.
std::unique_ptr<Decoder> NewFuseDecoder();
// Removes up to `start` leading and `stop` trailing `content` characters from
// every token.
std::unique_ptr<Decoder> NewStripDecoder(char32_t content, size_t start, size_t stop);
std::unique_ptr<Decoder> NewSequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_DECODER_H_
