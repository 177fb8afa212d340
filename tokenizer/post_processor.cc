#include "tokenizer/post_processor.h"

#include <utility>

namespace moeserve {
namespace {

class TemplatePostProcessor : public PostProcessor {
 public:
  explicit TemplatePostProcessor(std::vector<TemplatePiece> single) : single_(std::move(single)) {}

  void Process(std::vector<int32_t>* ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int32_t> out;
    out.reserve(ids->size() + 4);
    for (const TemplatePiece& piece : single_) {
      if (piece.kind == TemplatePiece::kSequence) {
        out.insert(out.end(), ids->begin(), ids->end());
      } else {
        out.insert(out.end(), piece.ids.begin(), piece.ids.end());
      }
    }
    *ids = std::move(out);
  }

 private:
  std::vector<TemplatePiece> single_;
};

class IdentityPostProcessor : public PostProcessor {
 public:
  void Process(std::vector<int32_t>*, bool) const override {}
};

class SequencePostProcessor : public PostProcessor {
 public:
  explicit SequencePostProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}

  void Process(std::vector<int32_t>* ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) step->Process(ids, add_special_tokens);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

}  // namespace

std::unique_ptr<PostProcessor> NewTemplatePostProcessor(std::vector<TemplatePiece> single) {
  return std::make_unique<TemplatePostProcessor>(std::move(single));
}

std::unique_ptr<PostProcessor> NewIdentityPostProcessor() {
  return std::make_unique<IdentityPostProcessor>();
}

std::unique_ptr<PostProcessor> NewSequencePostProcessor(
    std::vector<std::unique_ptr<PostProcessor>> steps) {
  return std::make_unique<SequencePostProcessor>(std::move(steps));
}

}  // namespace moeserve
