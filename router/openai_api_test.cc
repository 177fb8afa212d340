#include "router/openai_api.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace router {
namespace openai {
namespace {

using json = nlohmann::json;

absl::StatusOr<ParsedRequest> Parse(Endpoint e, const json& body) {
  return ParseRequest(e, body.dump(), "austen-moe");
}

void ExpectBad(Endpoint e, const json& body, const std::string& names) {
  auto r = Parse(e, body);
  ASSERT_FALSE(r.ok()) << body.dump();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find(names), std::string::npos) << r.status();
}

TEST(OpenAiApi, CompletionRequestMapsEveryField) {
  auto r = Parse(Endpoint::kCompletions,
                 {{"model", "austen-moe"}, {"prompt", "It is a truth"}, {"max_tokens", 7},
                  {"temperature", 0.5}, {"top_p", 0.9}, {"top_k", 40}, {"min_p", 0.05},
                  {"presence_penalty", 0.5}, {"frequency_penalty", -0.5},
                  {"repetition_penalty", 1.1}, {"seed", 42}, {"stop", {"\n\n", "Emma"}},
                  {"ignore_eos", true}, {"priority", -2}, {"stream", true},
                  {"stream_options", {{"include_usage", true}}}});
  ASSERT_TRUE(r.ok()) << r.status();
  const v1::GenerateRequest& g = r->request;
  EXPECT_EQ(g.text(), "It is a truth");
  EXPECT_EQ(g.max_tokens(), 7u);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(g.sampling().min_p(), 0.05f);
  EXPECT_FLOAT_EQ(g.sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().frequency_penalty(), -0.5f);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  EXPECT_EQ(g.sampling().seed(), 42u);
  ASSERT_EQ(g.stop_size(), 2);
  EXPECT_EQ(g.stop(1), "Emma");
  EXPECT_TRUE(g.ignore_eos());
  EXPECT_EQ(g.priority(), -2);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(g.request_id().rfind("cmpl-", 0), 0u);
}

TEST(OpenAiApi, DefaultsAreOpenAis) {
  auto r = Parse(Endpoint::kCompletions, {{"model", "austen-moe"}, {"prompt", {1, 2, 3}}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.token_ids().ids_size(), 3);
  EXPECT_EQ(r->request.max_tokens(), 16u);
  EXPECT_FLOAT_EQ(r->request.sampling().temperature(), 1.0f);
  EXPECT_FALSE(r->request.sampling().has_top_p());
  EXPECT_FALSE(r->stream);
  // top_k -1 is vLLM's "off".
  r = Parse(Endpoint::kCompletions, {{"model", "austen-moe"}, {"prompt", "x"}, {"top_k", -1}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.sampling().top_k(), 0);
}

TEST(OpenAiApi, ChatMessagesAndContentParts) {
  auto r = Parse(Endpoint::kChat,
                 {{"model", "austen-moe"},
                  {"messages",
                   {{{"role", "system"}, {"content", "Be brief."}},
                    {{"role", "user"},
                     {"content", {{{"type", "text"}, {"text", "Hello, "}},
                                  {{"type", "text"}, {"text", "Emma."}}}}}}},
                  {"max_completion_tokens", 9}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->request.chat().messages_size(), 2);
  EXPECT_EQ(r->request.chat().messages(1).content(), "Hello, Emma.");
  EXPECT_FALSE(r->request.chat().no_generation_prompt());
  EXPECT_EQ(r->request.max_tokens(), 9u);
  EXPECT_EQ(r->request.request_id().rfind("chatcmpl-", 0), 0u);
}

TEST(OpenAiApi, BadRequestsNameTheField) {
  const Endpoint c = Endpoint::kCompletions;
  EXPECT_EQ(ParseRequest(c, "{not json", "m").status().code(), absl::StatusCode::kInvalidArgument);
  ExpectBad(c, {{"prompt", "x"}}, "'model'");
  ExpectBad(c, {{"model", "austen-moe"}}, "'prompt'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", {"a", "b"}}}, "one prompt per request");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"temperature", 3}}, "'temperature'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"temperature", "hot"}},
            "'temperature'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"max_tokens", 0}}, "'max_tokens'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"top_p", 0}}, "'top_p'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"n", 2}}, "'n'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"stop", 5}}, "'stop'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"logprobs", 2}}, "'logprobs'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"echo", true}}, "'echo'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", {1, int64_t{1} << 40}}}, "'prompt'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", {1, -2}}}, "'prompt'");
  ExpectBad(c, {{"model", "austen-moe"}, {"prompt", "x"}, {"stop_token_ids", {-1}}},
            "'stop_token_ids'");
  ExpectBad(Endpoint::kChat, {{"model", "austen-moe"}, {"messages", json::array()}},
            "'messages'");
  ExpectBad(Endpoint::kChat,
            {{"model", "austen-moe"}, {"messages", {{{"content", "hi"}}}}}, "'role'");
  ExpectBad(Endpoint::kChat,
            {{"model", "austen-moe"},
             {"messages", {{{"role", "user"}, {"content", "hi"}}}},
             {"tools", {{{"type", "function"}}}}},
            "'tools'");
  auto other = Parse(c, {{"model", "gpt-4"}, {"prompt", "x"}});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpStatusFor(other.status().code()), 404);
}

TEST(OpenAiApi, StatusCodesAndErrorObjects) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  const json e = json::parse(ErrorBody(absl::ResourceExhaustedError("worker full")));
  EXPECT_EQ(e["error"]["message"], "worker full");
  EXPECT_EQ(e["error"]["code"], 429);
  EXPECT_EQ(e["error"]["type"], "RateLimitError");
}

v1::GenerateResponse Message(const std::string& text, bool finish = false) {
  v1::GenerateResponse m;
  m.set_text(text);
  m.add_token_ids(1);
  if (finish) {
    m.mutable_finish()->set_reason(v1::FINISH_REASON_LENGTH);
    m.mutable_finish()->mutable_usage()->set_prompt_tokens(4);
    m.mutable_finish()->mutable_usage()->set_completion_tokens(2);
  }
  return m;
}

TEST(OpenAiApi, WholeAnswers) {
  ResponseBuilder chat(Endpoint::kChat, "austen-moe", "chatcmpl-1", 1700000000);
  chat.Add(Message("Dear "));
  chat.Add(Message("Emma", true));
  const json b = json::parse(chat.Body());
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_EQ(b["model"], "austen-moe");
  EXPECT_EQ(b["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(b["choices"][0]["message"]["content"], "Dear Emma");
  EXPECT_EQ(b["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(b["usage"]["total_tokens"], 6);
  ResponseBuilder text(Endpoint::kCompletions, "austen-moe", "cmpl-1", 1700000000);
  text.Add(Message("x", true));
  EXPECT_EQ(json::parse(text.Body())["choices"][0]["text"], "x");
}

// "data: {...}\n\n" events → their JSON objects.
std::vector<json> Events(const std::string& sse) {
  std::vector<json> out;
  size_t at = 0;
  while ((at = sse.find("data: ", at)) != std::string::npos) {
    const size_t end = sse.find("\n\n", at);
    out.push_back(json::parse(sse.substr(at + 6, end - at - 6)));
    at = end;
  }
  return out;
}

TEST(OpenAiApi, ChatStreamStartsWithTheRoleAndEndsWithUsage) {
  ResponseBuilder s(Endpoint::kChat, "austen-moe", "chatcmpl-1", 1700000000);
  std::string sse = s.StreamEvents(Message("Dear "), true);
  sse += s.StreamEvents(Message(""), true);  // ids only: nothing to send
  sse += s.StreamEvents(Message("Emma", true), true);
  const std::vector<json> ev = Events(sse);
  ASSERT_EQ(ev.size(), 3u) << sse;
  EXPECT_EQ(ev[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["content"], "Dear ");
  EXPECT_EQ(ev[1]["choices"][0]["delta"]["content"], "Emma");
  EXPECT_EQ(ev[1]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(ev[2]["choices"].empty());
  EXPECT_EQ(ev[2]["usage"]["completion_tokens"], 2);
  EXPECT_EQ(ResponseBuilder::StreamDone(), "data: [DONE]\n\n");
  const std::string err = ResponseBuilder::StreamError(absl::UnavailableError("rank lost"));
  EXPECT_NE(err.find("\"rank lost\""), std::string::npos);
  EXPECT_NE(err.find("data: [DONE]"), std::string::npos);
}

}  // namespace
}  // namespace openai
}  // namespace router
}  // namespace moeserve
