#include "tokenizer/chat_template.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

std::string TestFile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const std::string full = srcdir != nullptr ? std::string(srcdir) + "/moeserve/" + path : path;
  std::ifstream in(full, std::ios::binary);
  EXPECT_TRUE(in.good()) << full;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const Json& Golden() {
  static const Json* golden =
      new Json(Json::parse(TestFile("tokenizer/testdata/chat_golden.json")));
  return *golden;
}

std::vector<ChatMessage> Messages(const Json& list) {
  std::vector<ChatMessage> messages;
  for (const Json& m : list) {
    ChatMessage message{m["role"].get<std::string>(), m["content"].get<std::string>(), {}};
    if (m.contains("reasoning_content")) {
      message.reasoning_content = m["reasoning_content"].get<std::string>();
    }
    messages.push_back(std::move(message));
  }
  return messages;
}

TEST(ChatTemplateTest, DetectsEveryRealTemplate) {
  for (const auto& [family, info] : Golden()["families"].items()) {
    const std::string text =
        TestFile("tokenizer/testdata/chat_templates/" + info["template"].get<std::string>());
    auto format = DetectChatFormat(text);
    ASSERT_TRUE(format.ok()) << family << ": " << format.status();
    EXPECT_EQ(ChatFormatName(*format), family);
  }
}

// Every case that make_chat_golden.py rendered with Jinja2.
TEST(ChatTemplateTest, MatchesJinjaRenderings) {
  const Json& golden = Golden();
  int checked = 0;
  for (const Json& c : golden["cases"]) {
    const std::string family = c["family"].get<std::string>();
    const std::string conversation = c["conversation"].get<std::string>();
    SCOPED_TRACE(
        family + "/" + conversation + " gen=" + c["add_generation_prompt"].dump() +
        " thinking=" + (c.contains("enable_thinking") ? c["enable_thinking"].dump() : "-"));
    auto format = ParseChatFormat(family);
    ASSERT_TRUE(format.ok());
    TokenizerConfig config;
    const Json& special = golden["families"][family]["special_tokens"];
    if (special.contains("bos_token")) config.bos_token = special["bos_token"].get<std::string>();
    if (special.contains("eos_token")) config.eos_token = special["eos_token"].get<std::string>();
    ChatRenderOptions options;
    if (c.contains("enable_thinking")) options.enable_thinking = c["enable_thinking"].get<bool>();
    auto rendered = RenderChat(*format, Messages(golden["conversations"][conversation]),
                               c["add_generation_prompt"].get<bool>(), config, options);
    if (c.contains("expected")) {
      ASSERT_TRUE(rendered.ok()) << rendered.status();
      EXPECT_EQ(*rendered, c["expected"].get<std::string>());
    } else {
      const std::string error = c["error"].get<std::string>();
      ASSERT_FALSE(rendered.ok()) << "Jinja raised: " << error;
      EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument);
      const std::string expected_part = error.rfind("undefined:", 0) == 0 ? "undefined:" : error;
      EXPECT_NE(std::string(rendered.status().message()).find(expected_part), std::string::npos)
          << rendered.status();
    }
    ++checked;
  }
  EXPECT_GE(checked, 150);
}

TEST(ChatTemplateTest, UnknownTemplateNamesTheFlag) {
  // Qwen2.5's template prints a default system prompt: not plain ChatML.
  const std::string qwen25 =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
      "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou "
      "are Qwen, created by Alibaba Cloud.<|im_end|>\\n' }}{%- endif %}{%- for message in "
      "messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
      "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
      "'<|im_start|>assistant\\n' }}{%- endif %}";
  for (const std::string& text : {qwen25, std::string("{{ messages }}"), std::string()}) {
    auto format = DetectChatFormat(text);
    ASSERT_FALSE(format.ok());
    EXPECT_EQ(format.status().code(), absl::StatusCode::kNotFound);
    EXPECT_NE(
        std::string(format.status().message()).find("--chat-format=chatml|qwen3|llama2|mistral"),
        std::string::npos);
  }
}

TEST(ChatTemplateTest, DetectionToleratesFormatting) {
  // The plain ChatML template written with dashes, double quotes and
  // attribute access.
  const std::string chatml =
      "{%- for message in messages -%}\n  {{- \"<|im_start|>\" + message.role + \"\\n\" + "
      "message.content + \"<|im_end|>\" + \"\\n\" -}}\n{%- endfor -%}\n{%- if "
      "add_generation_prompt -%}{{- \"<|im_start|>assistant\\n\" -}}{%- endif -%}";
  auto format = DetectChatFormat(chatml);
  ASSERT_TRUE(format.ok()) << format.status();
  EXPECT_EQ(*format, ChatFormat::kChatMl);
}

TEST(ChatTemplateTest, ParseChatFormat) {
  for (std::string_view name : {"chatml", "qwen3", "llama2", "mistral"}) {
    auto format = ParseChatFormat(name);
    ASSERT_TRUE(format.ok());
    EXPECT_EQ(ChatFormatName(*format), name);
  }
  auto bad = ParseChatFormat("llama3");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("chatml|qwen3|llama2|mistral"),
            std::string::npos);
}

TEST(ChatTemplateTest, Llama2NeedsSpecialTokens) {
  auto rendered = RenderChat(ChatFormat::kLlama2, {{"user", "hi", {}}}, true, TokenizerConfig{});
  ASSERT_FALSE(rendered.ok());
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ChatTemplateTest, InvalidUtf8ContentDoesNotCrash) {
  TokenizerConfig config;
  config.bos_token = "<s>";
  config.eos_token = "</s>";
  const std::vector<ChatMessage> messages = {{"user", std::string("\xff\xe4 x \xc3"), {}}};
  for (ChatFormat format :
       {ChatFormat::kChatMl, ChatFormat::kQwen3, ChatFormat::kLlama2, ChatFormat::kMistral}) {
    EXPECT_TRUE(RenderChat(format, messages, true, config).ok());
  }
}

}  // namespace
}  // namespace moeserve
