#include "tokenizer/tokenizer_config.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

TEST(TokenizerConfigTest, StringsAndAddedTokenObjects) {
  auto config = TokenizerConfig::FromJson(R"({
    "add_bos_token": true, "add_eos_token": false,
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
    "eos_token": "</s>", "pad_token": null, "unk_token": "<unk>",
    "chat_template": "{{ messages }}", "tokenizer_class": "LlamaTokenizer",
    "model_max_length": 1000000000000000019884624838656})",
                                          "cfg.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  EXPECT_FALSE(config->pad_token.has_value());
  EXPECT_EQ(config->unk_token, "<unk>");
  EXPECT_EQ(config->chat_template, "{{ messages }}");
  EXPECT_EQ(config->add_bos_token, true);
  EXPECT_EQ(config->add_eos_token, false);
  EXPECT_EQ(config->tokenizer_class, "LlamaTokenizer");
}

TEST(TokenizerConfigTest, NamedTemplates) {
  auto config = TokenizerConfig::FromJson(
      R"({"chat_template": [{"name": "tool_use", "template": "T"},
                            {"name": "default", "template": "D"}]})",
      "cfg.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "D");
  EXPECT_FALSE(config->bos_token.has_value());
  EXPECT_FALSE(config->add_bos_token.has_value());

  auto no_default = TokenizerConfig::FromJson(
      R"({"chat_template": [{"name": "tool_use", "template": "T"}]})", "cfg.json");
  ASSERT_FALSE(no_default.ok());
  const std::string message(no_default.status().message());
  EXPECT_NE(message.find("cfg.json"), std::string::npos);
  EXPECT_NE(message.find("tool_use"), std::string::npos);
}

TEST(TokenizerConfigTest, WrongTypesNameTheField) {
  for (const char* text :
       {R"({"eos_token": 5})", R"({"add_bos_token": "yes"})", R"({"chat_template": 3})",
        R"({"bos_token": {"lstrip": true}})", R"([1])", R"({"x": )"}) {
    auto config = TokenizerConfig::FromJson(text, "/m/tokenizer_config.json");
    ASSERT_FALSE(config.ok()) << text;
    EXPECT_NE(std::string(config.status().message()).find("/m/tokenizer_config.json"),
              std::string::npos);
  }
  auto config = TokenizerConfig::FromJson(R"({"add_bos_token": "yes"})", "c.json");
  EXPECT_NE(std::string(config.status().message()).find("add_bos_token"), std::string::npos);
  EXPECT_EQ(TokenizerConfig::FromFile("/nonexistent/tokenizer_config.json").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moeserve
