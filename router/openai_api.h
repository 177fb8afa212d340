// The OpenAI-compatible HTTP API's translation layer: request JSON to a
// moeserve.v1.GenerateRequest, and GenerateResponse chunks to the JSON of
// /v1/completions and /v1/chat/completions (whole or as Server-Sent Events),
// with vLLM's extensions (top_k, min_p, repetition_penalty, ignore_eos,
// priority). Pure functions and a small accumulator: no sockets, no gRPC
// calls; router/http_server.cc does the serving.
//
//   auto parsed = ParseRequest(Endpoint::kChat, body, "austen-moe");
//   if (!parsed.ok()) -> HttpStatusFor(parsed.status()), ErrorBody(parsed.status())
//   ResponseBuilder out(Endpoint::kChat, "austen-moe", parsed->request.request_id());
//   for each GenerateResponse r: out.Add(r) / out.StreamChunk(r) ...
//
// What is refused with 400 and a message naming the field (rather than
// ignored): n > 1, best_of > 1, echo, logit_bias, logprobs, tools,
// response_format other than text, suffix, and prompts given as several
// strings. The request's `model` must name the served model (404 otherwise).
#ifndef MOESERVE_ROUTER_OPENAI_API_H_
#define MOESERVE_ROUTER_OPENAI_API_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moeserve/v1/inference.pb.h"

namespace moeserve {
namespace router {
namespace openai {

enum class Endpoint { kCompletions, kChat };

struct ParsedRequest {
  v1::GenerateRequest request;  // request_id set to a fresh "cmpl-…" / "chatcmpl-…"
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// INVALID_ARGUMENT (bad JSON, wrong types, out-of-range or unsupported
// fields) or NOT_FOUND (another model), each naming the field.
absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, const std::string& body,
                                           const std::string& model_name);

// The HTTP status for an error status (gRPC's codes through absl's):
// INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE 400, NOT_FOUND 404,
// RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED 504,
// UNIMPLEMENTED 501, anything else 500.
int HttpStatusFor(absl::StatusCode code);
// {"error": {"message", "type", "param", "code"}}: OpenAI's error object, as
// vLLM fills it (code = the HTTP status).
std::string ErrorBody(const absl::Status& status);
std::string ErrorBody(int http_status, const std::string& message);

// GET /v1/models.
std::string ModelsBody(const std::string& model_name, int64_t created);

// Builds the answer to one request from the GenerateResponse messages of its
// stream, in order.
class ResponseBuilder {
 public:
  ResponseBuilder(Endpoint endpoint, std::string model_name, std::string id, int64_t created);

  // Non-streaming: take a message; Body() once the stream ended OK.
  void Add(const v1::GenerateResponse& message);
  std::string Body() const;

  // Streaming: the SSE events ("data: {…}\n\n") for one message. The chat
  // endpoint's first event also carries {"role": "assistant"}; the message
  // with the finish carries finish_reason, and then, with include_usage, an
  // event with empty choices and the usage.
  std::string StreamEvents(const v1::GenerateResponse& message, bool include_usage);
  // An error after the stream began: an error event, then [DONE].
  static std::string StreamError(const absl::Status& status);
  static std::string StreamDone() { return "data: [DONE]\n\n"; }

 private:
  std::string Chunk(const std::string& text, const char* finish_reason, bool first) const;

  const Endpoint endpoint_;
  const std::string model_name_, id_;
  const int64_t created_;
  std::string text_;
  bool sent_first_ = false;
  bool finished_ = false;
  v1::Finish finish_;
};

}  // namespace openai
}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_OPENAI_API_H_
