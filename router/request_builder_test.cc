#include "router/request_builder.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace router {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kChatModel[] = "tests/fixtures/qwen3_moe_chat";  // tokenizer + template
constexpr char kBareModel[] = "tests/fixtures/qwen3_moe_f32";   // config.json only
constexpr int32_t kImEnd = 421;                                 // the chat model's EOS

std::unique_ptr<RequestBuilder> Builder(const std::string& dir,
                                        const std::string& chat_format = "") {
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  auto text = LoadTextFiles(dir);
  EXPECT_TRUE(text.ok()) << text.status();
  auto b = RequestBuilder::Create(*std::move(config), *std::move(text), chat_format, "m");
  EXPECT_TRUE(b.ok()) << b.status();
  return *std::move(b);
}

v1::GenerateRequest Ids(std::initializer_list<int32_t> ids) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  return r;
}

void ExpectError(const absl::StatusOr<internal::v1::Submit>& s, absl::StatusCode code,
                 const std::string& substring) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), code) << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(substring));
}

TEST(RequestBuilderTest, TokenIdsPassThroughWithDefaults) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r = Ids({1, 2, 3});
  r.mutable_sampling()->set_temperature(0.5f);
  r.mutable_sampling()->set_seed(7);
  r.add_stop_token_ids(9);
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->prompt(), ElementsAre(1, 2, 3));
  EXPECT_EQ(s->max_tokens(), kDefaultMaxTokens);  // 0 means 16
  EXPECT_FLOAT_EQ(s->sampling().temperature(), 0.5f);
  EXPECT_EQ(s->sampling().seed(), 7u);
  EXPECT_THAT(s->stop_token_ids(), ElementsAre(9, kImEnd));  // the EOS is added
  EXPECT_FALSE(s->ignore_eos());
}

TEST(RequestBuilderTest, SamplingKnobsPassThroughAndUnsetOnesAreOff) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r = Ids({1, 2, 3});
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->sampling().top_k(), 0);
  EXPECT_FLOAT_EQ(s->sampling().top_p(), 1.0f);  // unset: off
  EXPECT_FLOAT_EQ(s->sampling().min_p(), 0.0f);
  EXPECT_FLOAT_EQ(s->sampling().repetition_penalty(), 1.0f);  // unset: off
  v1::SamplingParams* p = r.mutable_sampling();
  p->set_top_k(5);
  p->set_top_p(0.8f);
  p->set_min_p(0.1f);
  p->set_repetition_penalty(1.2f);
  p->set_presence_penalty(-0.5f);
  p->set_frequency_penalty(0.25f);
  s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->sampling().top_k(), 5);
  EXPECT_FLOAT_EQ(s->sampling().top_p(), 0.8f);
  EXPECT_FLOAT_EQ(s->sampling().min_p(), 0.1f);
  EXPECT_FLOAT_EQ(s->sampling().repetition_penalty(), 1.2f);
  EXPECT_FLOAT_EQ(s->sampling().presence_penalty(), -0.5f);
  EXPECT_FLOAT_EQ(s->sampling().frequency_penalty(), 0.25f);
  p->set_top_p(0.0f);  // set to 0 is not unset
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "sampling.top_p");
  p->set_top_p(1.0f);
  p->set_repetition_penalty(0.0f);
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "sampling.repetition_penalty");
  p->set_repetition_penalty(1.0f);
  p->set_top_k(-1);
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "sampling.top_k");
}

TEST(RequestBuilderTest, IgnoreEosLeavesEosOut) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r = Ids({1});
  r.set_ignore_eos(true);
  r.set_max_tokens(5);
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->stop_token_ids().empty());
  EXPECT_TRUE(s->ignore_eos());
  EXPECT_EQ(s->max_tokens(), 5u);
  EXPECT_EQ(s->priority(), 0);
}

TEST(RequestBuilderTest, PriorityPassesToTheWorker) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r = Ids({1});
  r.set_priority(-3);
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->priority(), -3);
}

TEST(RequestBuilderTest, TextIsEncodedWithSpecialTokens) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r;
  r.set_text("Hello world");
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->prompt(),
              ElementsAreArray(b->tokenizer()->Encode("Hello world", /*add_special_tokens=*/true)));
}

TEST(RequestBuilderTest, ChatIsRenderedWithTheTemplate) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hi");
  auto s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string expected = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_THAT(s->prompt(), ElementsAreArray(b->tokenizer()->Encode(expected, false)));

  r.mutable_chat()->set_no_generation_prompt(true);
  s = b->Build(r);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->prompt(),
              ElementsAreArray(b->tokenizer()->Encode("<|im_start|>user\nHi<|im_end|>\n", false)));
}

TEST(RequestBuilderTest, PromptMustBeSetAndNonEmpty) {
  auto b = Builder(kChatModel);
  ExpectError(b->Build(v1::GenerateRequest()), absl::StatusCode::kInvalidArgument,
              "prompt is not set");
  v1::GenerateRequest text;
  text.set_text("");
  ExpectError(b->Build(text), absl::StatusCode::kInvalidArgument, "text is empty");
  v1::GenerateRequest ids;
  ids.mutable_token_ids();
  ExpectError(b->Build(ids), absl::StatusCode::kInvalidArgument, "token_ids.ids is empty");
  v1::GenerateRequest chat;
  chat.mutable_chat();
  ExpectError(b->Build(chat), absl::StatusCode::kInvalidArgument, "chat.messages is empty");
}

TEST(RequestBuilderTest, IdsOutsideTheVocabulary) {
  auto b = Builder(kChatModel);  // vocab_size 448
  ExpectError(b->Build(Ids({1, 448})), absl::StatusCode::kInvalidArgument,
              "token_ids.ids[1] is 448, outside the model's vocabulary [0, 448)");
  ExpectError(b->Build(Ids({-1})), absl::StatusCode::kInvalidArgument, "token_ids.ids[0] is -1");
  v1::GenerateRequest r = Ids({1});
  r.add_stop_token_ids(5000);
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "stop_token_ids[0] is 5000");
  EXPECT_TRUE(b->Build(Ids({0, 447})).ok());
}

TEST(RequestBuilderTest, ChatRoles) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r;
  r.mutable_chat()->add_messages()->set_role("user");
  r.mutable_chat()->add_messages();
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "chat.messages[1].role is empty");
  r.mutable_chat()->mutable_messages(1)->set_role("robot");
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "chat.messages[1].role is 'robot'");
}

TEST(RequestBuilderTest, Temperature) {
  auto b = Builder(kChatModel);
  for (float t :
       {-0.1f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    v1::GenerateRequest r = Ids({1});
    r.mutable_sampling()->set_temperature(t);
    ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument, "sampling.temperature");
  }
}

TEST(RequestBuilderTest, ContextLengthGivesBothNumbers) {
  auto b = Builder(kChatModel);  // max_position_embeddings 256
  v1::GenerateRequest r = Ids({1, 2, 3, 4});
  r.set_max_tokens(253);
  ExpectError(b->Build(r), absl::StatusCode::kInvalidArgument,
              "the prompt (4 tokens) plus max_tokens (253) is 257, beyond the model's context "
              "length of 256 tokens");
  r.set_max_tokens(252);
  EXPECT_TRUE(b->Build(r).ok());
  r.set_max_tokens(4000000000u);  // no overflow
  EXPECT_FALSE(b->Build(r).ok());
}

TEST(RequestBuilderTest, NoTokenizerMeansTokenIdsOnly) {
  auto b = Builder(kBareModel);
  EXPECT_EQ(b->tokenizer(), nullptr);
  v1::GenerateRequest text;
  text.set_text("Hello");
  ExpectError(b->Build(text), absl::StatusCode::kFailedPrecondition, "no tokenizer.json");
  v1::GenerateRequest chat;
  chat.mutable_chat()->add_messages()->set_role("user");
  ExpectError(b->Build(chat), absl::StatusCode::kFailedPrecondition, "no tokenizer.json");
  auto s = b->Build(Ids({1, 2}));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->stop_token_ids().empty());  // no tokenizer EOS to add
}

TEST(RequestBuilderTest, StopStrings) {
  auto b = Builder(kChatModel);
  v1::GenerateRequest r = Ids({1, 2});
  r.add_stop("\n\n");
  r.add_stop(std::string(kMaxStopStringBytes, 'x'));
  EXPECT_TRUE(b->Build(r).ok());  // the strings stay in the router: no Submit field

  v1::GenerateRequest empty = r;
  empty.add_stop("");
  ExpectError(b->Build(empty), absl::StatusCode::kInvalidArgument, "stop[2] is empty");

  v1::GenerateRequest long_one = r;
  long_one.set_stop(0, std::string(kMaxStopStringBytes + 1, 'x'));
  ExpectError(b->Build(long_one), absl::StatusCode::kInvalidArgument,
              "stop[0] is 257 bytes; at most 256 are allowed");

  v1::GenerateRequest many = Ids({1, 2});
  for (int i = 0; i < kMaxStopStrings; ++i) many.add_stop(std::to_string(i));
  EXPECT_TRUE(b->Build(many).ok());
  many.add_stop("one more");
  ExpectError(b->Build(many), absl::StatusCode::kInvalidArgument,
              "stop[16]: at most 16 stop strings are allowed, got 17");

  // Matching needs the text, so the tokenizer.
  v1::GenerateRequest bare = Ids({1, 2});
  bare.add_stop("x");
  ExpectError(Builder(kBareModel)->Build(bare), absl::StatusCode::kFailedPrecondition,
              "stop strings cannot be matched");
}

TEST(RequestBuilderTest, ChatFormatFlag) {
  // A bad flag value fails at startup.
  auto config = LoadModelConfig(kChatModel);
  auto text = LoadTextFiles(kChatModel);
  ASSERT_TRUE(config.ok() && text.ok());
  auto bad = RequestBuilder::Create(*config, *std::move(text), "nope", "m");
  EXPECT_FALSE(bad.ok());

  auto b = Builder(kChatModel, "chatml");
  v1::GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hi");
  EXPECT_TRUE(b->Build(r).ok());
}

// A model directory in TEST_TMPDIR with the chat fixture's config.json and
// tokenizer.json, and `tokenizer_config` (if not empty) as tokenizer_config.json.
std::string ModelWithTokenizerConfig(const std::string& name, const std::string& tokenizer_config) {
  const std::string dir = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  EXPECT_EQ(std::system(("mkdir -p " + dir + " && cp " + kChatModel + "/config.json " + kChatModel +
                         "/tokenizer.json " + dir)
                            .c_str()),
            0);
  if (!tokenizer_config.empty()) std::ofstream(dir + "/tokenizer_config.json") << tokenizer_config;
  return dir;
}

v1::GenerateRequest UserSays(const std::string& text) {
  v1::GenerateRequest r;
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content(text);
  return r;
}

TEST(RequestBuilderTest, ChatWithoutTemplateNeedsTheFlag) {
  const std::string dir = ModelWithTokenizerConfig("no_template", "");
  auto b = Builder(dir);
  ExpectError(b->Build(UserSays("Hi")), absl::StatusCode::kFailedPrecondition, "--chat-format");
  v1::GenerateRequest text;
  text.set_text("Hi");
  EXPECT_TRUE(b->Build(text).ok());  // text still works
  EXPECT_TRUE(Builder(dir, "chatml")->Build(UserSays("Hi")).ok());
}

TEST(RequestBuilderTest, UnknownTemplateNeedsTheFlag) {
  const std::string dir =
      ModelWithTokenizerConfig("odd_template", R"({"chat_template": "{{ messages }}"})");
  auto b = Builder(dir);
  EXPECT_FALSE(b->chat_status().ok());
  ExpectError(b->Build(UserSays("Hi")), absl::StatusCode::kFailedPrecondition, "chat-format");
  EXPECT_TRUE(Builder(dir, "chatml")->Build(UserSays("Hi")).ok());
}

}  // namespace
}  // namespace router
}  // namespace moeserve
