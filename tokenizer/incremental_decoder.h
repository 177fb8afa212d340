// Streaming detokenization: turns generated ids into text one id at a time,
// the way vLLM and TGI do it (a "prefix" window of already-emitted tokens is
// decoded again together with the new ones, so that decoders that look at
// neighbouring tokens, such as SentencePiece's leading-space rule, behave as
// in a full decode).
//
//   IncrementalDecoder stream(tokenizer.get(), /*skip_special_tokens=*/true);
//   for (int32_t id : generated) Send(stream.Append(id));
//   Send(stream.Flush());
//
// Guarantees: every string returned is valid UTF-8 and never ends in half a
// character, nor in a U+FFFD that only stands for a character still
// incomplete (such text is held back until the next id completes it or
// Flush() gives up on it); and, without `context`, the concatenation of all
// Append() results and Flush() equals tokenizer->Decode(all ids,
// skip_special_tokens). Ids that name no token are skipped, as in Decode.
//
// Not thread-safe (one per stream); the tokenizer must outlive it.
#ifndef MOESERVE_TOKENIZER_INCREMENTAL_DECODER_H_
#define MOESERVE_TOKENIZER_INCREMENTAL_DECODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {

class IncrementalDecoder {
 public:
  // `context`: ids already shown to the user (say, the end of the prompt);
  // they are never emitted but make the first generated token decode as it
  // would after them (e.g. Llama-2's "▁Hello" gives " Hello", not "Hello").
  IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens,
                     absl::Span<const int32_t> context = {});

  // The text that `id` completes (possibly empty).
  std::string Append(int32_t id);

  // Whatever text is still held back, e.g. a trailing incomplete character
  // (as U+FFFD, like Decode gives it).
  std::string Flush();

 private:
  // Up to this many context ids are kept before the first generated id.
  static constexpr size_t kContextTokens = 6;

  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the window decoded each time
  size_t read_offset_ = 0;    // ids before this have been emitted
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_INCREMENTAL_DECODER_H_
