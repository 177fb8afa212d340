// libFuzzer target for the validation of moeserve.v1 requests: any bytes
// that parse as a GenerateRequest (text, token ids or chat messages, any
// sampling values, stop strings and ids) must build a worker Submit or fail
// with INVALID_ARGUMENT or FAILED_PRECONDITION: never crash, hang, leak or
// trip ASan/UBSan. What builds must be something a worker can run: a
// non-empty prompt of ids in the vocabulary, prompt + max_tokens within the
// context, sampling values CheckSamplingParams accepts, stop ids in the
// vocabulary. The builder is the demo model's (models/austen-moe: its BPE
// tokenizer and ChatML template), made once.
// Run briefly by //router:request_fuzz_test; by hand:
//   bazel build //router:request_fuzz_bin && bazel-bin/router/request_fuzz \
//       -max_total_time=60 router/testdata/request_fuzz_corpus
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "engine/sampler.h"
#include "router/request_builder.h"

namespace {

using moeserve::router::RequestBuilder;

const RequestBuilder& Builder() {
  static const RequestBuilder* builder = [] {
    const char* dir = std::getenv("MOESERVE_FUZZ_MODEL");
    if (dir == nullptr) dir = "models/austen-moe";
    auto config = moeserve::LoadModelConfig(dir);
    auto text = moeserve::LoadTextFiles(dir);
    if (!config.ok() || !text.ok()) {
      std::fprintf(stderr, "request_fuzz: cannot load %s\n", dir);
      std::abort();
    }
    auto b = RequestBuilder::Create(*std::move(config), *std::move(text), "", "m");
    if (!b.ok()) std::abort();
    return b->release();
  }();
  return *builder;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const RequestBuilder& builder = Builder();
  moeserve::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto built = builder.Build(request);
  if (!built.ok()) {
    const absl::StatusCode code = built.status().code();
    if (code != absl::StatusCode::kInvalidArgument &&
        code != absl::StatusCode::kFailedPrecondition) {
      std::abort();
    }
    if (built.status().message().empty()) std::abort();  // an error must say what was wrong
    return 0;
  }
  const moeserve::ModelConfig& c = builder.config();
  const auto& submit = *built;
  if (submit.prompt_size() == 0 || submit.max_tokens() == 0) std::abort();
  for (int32_t id : submit.prompt()) {
    if (id < 0 || id >= c.vocab_size) std::abort();
  }
  for (int32_t id : submit.stop_token_ids()) {
    if (id < 0 || id >= c.vocab_size) std::abort();
  }
  if (c.max_position_embeddings > 0 &&
      static_cast<uint64_t>(submit.prompt_size()) + submit.max_tokens() >
          static_cast<uint64_t>(c.max_position_embeddings)) {
    std::abort();
  }
  const auto& s = submit.sampling();
  moeserve::SamplingParams p;
  p.temperature = s.temperature();
  p.top_k = s.top_k();
  p.top_p = s.top_p();
  p.min_p = s.min_p();
  p.repetition_penalty = s.repetition_penalty();
  p.presence_penalty = s.presence_penalty();
  p.frequency_penalty = s.frequency_penalty();
  p.logprobs = s.logprobs();
  if (!moeserve::CheckSamplingParams(p).ok()) std::abort();
  return 0;
}
