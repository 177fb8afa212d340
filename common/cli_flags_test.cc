#include "common/cli_flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

absl::Status ParseArgs(FlagSet& flags, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return flags.Parse(static_cast<int>(argv.size()), argv.data(), 1);
}

TEST(FlagSetTest, ParsesEveryFormAndDashedNames) {
  FlagSet flags("t", "test");
  std::string model;
  int max_tokens = 16;
  float temperature = 0;
  bool chat = false, eos = true;
  uint64_t seed = 0;
  flags.String("model", &model, "DIR", "model");
  flags.Int("max-tokens", &max_tokens, "N", "n");
  flags.Float("temperature", &temperature, "T", "t");
  flags.Bool("chat", &chat, "c");
  flags.Bool("eos", &eos, "e");
  flags.Uint64("seed", &seed, "S", "s");
  ASSERT_TRUE(ParseArgs(flags, {"bin", "--model", "/m", "--max-tokens=7", "pos", "--chat",
                                "--noeos", "--temperature", "0.5", "--seed=18446744073709551615",
                                "--", "--not-a-flag"})
                  .ok());
  EXPECT_EQ(model, "/m");
  EXPECT_EQ(max_tokens, 7);
  EXPECT_TRUE(chat);
  EXPECT_FALSE(eos);
  EXPECT_FLOAT_EQ(temperature, 0.5f);
  EXPECT_EQ(seed, 18446744073709551615ull);
  EXPECT_EQ(flags.positional(), (std::vector<std::string>{"pos", "--not-a-flag"}));
  EXPECT_TRUE(flags.WasSet("max-tokens"));
  EXPECT_FALSE(flags.help_requested());
  EXPECT_THAT(flags.Usage(), HasSubstr("--max-tokens N"));
  EXPECT_THAT(flags.Usage(), HasSubstr("(default: 16)"));
}

TEST(FlagSetTest, ErrorsNameTheFlag) {
  FlagSet flags("moeserve run", "test");
  int n = 0;
  flags.Int("max-tokens", &n, "N", "n");
  EXPECT_THAT(std::string(ParseArgs(flags, {"bin", "--max-tokens=abc"}).message()),
              HasSubstr("flag --max-tokens: cannot parse 'abc'"));
  EXPECT_THAT(std::string(ParseArgs(flags, {"bin", "--max-tokens"}).message()),
              HasSubstr("flag --max-tokens needs a value"));
  EXPECT_THAT(std::string(ParseArgs(flags, {"bin", "--bogus=1"}).message()),
              HasSubstr("unknown flag --bogus for 'moeserve run'"));
  EXPECT_TRUE(ParseArgs(flags, {"bin", "--help"}).ok());
  EXPECT_TRUE(flags.help_requested());
}

TEST(FlagSetTest, IdLists) {
  std::vector<int32_t> ids;
  ASSERT_TRUE(ParseIdList("1, 2,3", "prompt-ids", &ids).ok());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_THAT(std::string(ParseIdList("1,,3", "prompt-ids", &ids).message()),
              HasSubstr("--prompt-ids: '' is not an integer"));
  EXPECT_FALSE(ParseIdList("1,x", "prompt-ids", &ids).ok());
}

}  // namespace
}  // namespace moeserve
