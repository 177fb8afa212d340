// libFuzzer target for the OpenAI HTTP API's request parsing: any body, for
// either endpoint, must parse or fail with a status — never crash, leak or
// trip ASan/UBSan — and what parses must respect the documented ranges.
// Run briefly by //router:openai_fuzz_test; by hand:
//   bazel build //router:openai_fuzz && bazel-bin/router/openai_fuzz \
//       -max_total_time=60 router/testdata/openai_fuzz_corpus
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "router/openai_api.h"

using moeserve::router::openai::Endpoint;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  for (Endpoint e : {Endpoint::kCompletions, Endpoint::kChat}) {
    auto parsed = moeserve::router::openai::ParseRequest(e, body, "m");
    if (!parsed.ok()) {
      const int status = moeserve::router::openai::HttpStatusFor(parsed.status().code());
      if (status != 400 && status != 404) std::abort();
      (void)moeserve::router::openai::ErrorBody(parsed.status());
      continue;
    }
    const auto& sp = parsed->request.sampling();
    if (!(sp.temperature() >= 0 && sp.temperature() <= 2)) std::abort();
    if (sp.has_top_p() && !(sp.top_p() > 0 && sp.top_p() <= 1)) std::abort();
    if (sp.top_k() < 0) std::abort();
    if (parsed->request.request_id().empty()) std::abort();
    // The answer builders take whatever text the model makes.
    moeserve::router::openai::ResponseBuilder out(e, "m", parsed->request.request_id(), 0);
    moeserve::v1::GenerateResponse m;
    m.set_text(body.substr(0, 64));
    m.mutable_finish()->set_reason(moeserve::v1::FINISH_REASON_STOP);
    out.Add(m);
    (void)out.Body();
    (void)out.StreamEvents(m, true);
  }
  return 0;
}
