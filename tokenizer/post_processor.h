// Post-processors of a tokenizer.json: what Encode(text, add_special_tokens)
// wraps around the ids of a single sequence. TemplateProcessing's `single`
// template (Llama-2: "<s> $A"), Bert/Roberta's fixed wrappers, and ByteLevel
// (which only trims offsets in HF, so leaves ids alone) are supported.
//
//   auto llama = NewTemplatePostProcessor({{TemplatePiece::kSpecial, {1}},
//                                          {TemplatePiece::kSequence, {}}});
//   llama->Process(&ids, /*add_special_tokens=*/true);  // prepends id 1
//
// Immutable and thread-safe.
#ifndef MOESERVE_TOKENIZER_POST_PROCESSOR_H_
#define MOESERVE_TOKENIZER_POST_PROCESSOR_H_

#include <cstdint>
#include <memory>
#include <vector>

namespace moeserve {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites the ids of one encoded sequence. Without add_special_tokens the
  // templates add nothing.
  virtual void Process(std::vector<int32_t>* ids, bool add_special_tokens) const = 0;
};

struct TemplatePiece {
  enum Kind { kSpecial, kSequence };
  Kind kind;
  std::vector<int32_t> ids;  // for kSpecial
};

std::unique_ptr<PostProcessor> NewTemplatePostProcessor(std::vector<TemplatePiece> single);
// Leaves ids as they are (HF's ByteLevel post-processor only trims offsets).
std::unique_ptr<PostProcessor> NewIdentityPostProcessor();
std::unique_ptr<PostProcessor> NewSequencePostProcessor(
    std::vector<std::unique_ptr<PostProcessor>> steps);

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_POST_PROCESSOR_H_
