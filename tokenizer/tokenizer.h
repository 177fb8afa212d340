// A Hugging Face tokenizer.json BPE tokenizer: Encode(text) and Decode(ids)
// give what the `tokenizers` library (Rust) gives for the same file, for the
// normalizers, pre-tokenizers, BPE options, added tokens, post-processors and
// decoders that byte-level (GPT-2/Qwen/Llama-3) and SentencePiece-converted
// (Llama-2/Mistral) tokenizers use. Anything else in the file is an error
// naming the file, the field and the supported types.
//
//   MOE_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok,
//                        Tokenizer::FromFile("/models/qwen3/tokenizer.json"));
//   std::vector<int32_t> ids = tok->Encode("Hello<|im_end|>", true);
//   std::string text = tok->Decode(ids, /*skip_special_tokens=*/false);
//
// Input that is not valid UTF-8 is first made valid by replacing each
// maximal ill-formed subpart with U+FFFD, exactly as Rust's
// String::from_utf8_lossy and JS's TextDecoder do; that is the text a caller
// that decodes bytes leniently would pass. Decode skips ids that name no
// token (as HF does) and never fails; its output is valid UTF-8.
//
// Differences from HF by design: the file's "truncation" and "padding" are
// ignored (a server truncates explicitly), and added tokens keep the ids the
// file gives them (HF re-derives them and warns when they differ, which
// never happens in a consistent file).
//
// A Tokenizer is immutable after loading; Encode and Decode are thread-safe
// (a word cache inside the BPE model is locked).
#ifndef MOESERVE_TOKENIZER_TOKENIZER_H_
#define MOESERVE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"

namespace moeserve {

class Tokenizer {
 public:
  // The parts of a tokenizer; any but the model may be null.
  struct Parts {
    std::unique_ptr<Normalizer> normalizer;
    std::unique_ptr<PreTokenizer> pre_tokenizer;
    std::unique_ptr<BpeModel> model;
    std::vector<AddedToken> added_tokens;
    std::unique_ptr<PostProcessor> post_processor;
    std::unique_ptr<Decoder> decoder;
  };

  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  // `source_name` (a path, say) prefixes every error message.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text,
                                                             std::string_view source_name);
  explicit Tokenizer(Parts parts);

  // Token ids of `text`; with add_special_tokens the post-processor's
  // template is applied (Llama-2 prepends <s>).
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const;

  // Text of `ids`; ids that name no token are skipped, and with
  // skip_special_tokens so are special added tokens.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  // One more than the largest id naming a token (model or added).
  int32_t VocabSize() const { return id_limit_; }
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token string (in the model's alphabet, e.g. "Ġhello"), or nullopt.
  std::optional<std::string> IdToToken(int32_t id) const;
  bool IsSpecialToken(int32_t id) const;
  // Whether `id` is a "<0xXX>" token that the decoder joins with its
  // neighbours into one byte run (byte-fallback tokenizers such as Llama-2).
  bool IsByteFallbackToken(int32_t id) const;
  // Whether Decode drops `id`: it names no token, or it is special and
  // special tokens are skipped.
  bool DecodeDrops(int32_t id, bool skip_special_tokens) const;
  // Ids of the special added tokens, ascending.
  std::vector<int32_t> SpecialTokenIds() const;
  const AddedVocabulary& added_vocabulary() const { return added_; }

 private:
  // The token string of `id` as Decode sees it, or null.
  const std::string* TokenString(int32_t id) const;

  Parts parts_;
  AddedVocabulary added_;
  int32_t id_limit_ = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_TOKENIZER_H_
