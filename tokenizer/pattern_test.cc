#include "tokenizer/pattern.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

using Matches = std::vector<Pattern::Match>;

Pattern Re(std::string_view regex) {
  auto p = Pattern::Regex(regex);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

TEST(PatternTest, RegexFindsNonOverlappingMatches) {
  EXPECT_EQ(Re("\\p{L}+").FindAll("ab 12 çé"), (Matches{{0, 2}, {6, 10}}));
  EXPECT_EQ(Re("x").FindAll(""), Matches{});
}

TEST(PatternTest, EmptyMatchesFollowRustFindIter) {
  // Rust's regex find_iter: an empty match right after a match is skipped.
  EXPECT_EQ(Re("a*").FindAll("baaac"), (Matches{{0, 0}, {1, 4}, {5, 5}}));
}

TEST(PatternTest, WhitespaceIsOnigurumas) {
  EXPECT_EQ(Re("\\s+").FindAll("a\u180eb"), Matches{});         // not U+180E
  EXPECT_EQ(Re("\\s").FindAll("a\u0085b"), (Matches{{1, 3}}));  // NEL
  EXPECT_EQ(Re("\\s").FindAll("a\ufeffb"), Matches{});          // not BOM
  EXPECT_EQ(Re("[^\\s\\p{L}]+").FindAll("a\u3000-b"), (Matches{{4, 5}}));
  EXPECT_EQ(Re("\\S+").FindAll(" ab\u180e "), (Matches{{1, 6}}));
}

TEST(PatternTest, RubySyntaxDifferences) {
  EXPECT_EQ(Re("\\w+").FindAll("e\u0301x-y"), (Matches{{0, 4}, {5, 6}}));  // marks are \w
  EXPECT_EQ(Re("^b").FindAll("a\nb"), (Matches{{2, 3}}));                  // ^ is a line anchor
  EXPECT_EQ(Re("a$").FindAll("a\na"), (Matches{{0, 1}, {2, 3}}));
  EXPECT_EQ(Re("(?m:a.b)").FindAll("a\nb"), (Matches{{0, 3}}));  // Ruby m = dotall
  EXPECT_EQ(Re("\\h+").FindAll("xBEEFy"), (Matches{{1, 5}}));    // \h = hex digit
  EXPECT_EQ(OnigToPcre2("[\\s]"),
            "[\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}"
            "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]");
  EXPECT_EQ(OnigToPcre2("[]\\d]\\\\s"), "[]\\d]\\\\s");  // literal ']' and escaped '\'
}

TEST(PatternTest, Qwen3SplitRegex) {
  const Pattern p =
      Re("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
         "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
  const std::string text = "I'LL pay 42!  ok\n\n";
  std::vector<std::string> pieces;
  for (auto [b, e] : p.FindAll(text)) pieces.push_back(text.substr(b, e - b));
  EXPECT_EQ(pieces,
            (std::vector<std::string>{"I", "'LL", " pay", " ", "4", "2", "!", " ", " ok", "\n\n"}));
}

TEST(PatternTest, LiteralMatches) {
  EXPECT_EQ(Pattern::Literal("aa").FindAll("aaaaa"), (Matches{{0, 2}, {2, 4}}));
  EXPECT_EQ(Pattern::Literal("").FindAll("ab"), (Matches{{0, 0}, {1, 1}, {2, 2}}));
  EXPECT_EQ(Pattern::Literal("").ReplaceAll("abc", "x"), "xaxbxcx");
  EXPECT_EQ(Pattern::Literal("▁").ReplaceAll("▁a▁▁b", " "), " a  b");
}

TEST(PatternTest, InvalidInputAndBadRegex) {
  EXPECT_EQ(Re(".").FindAll("\xff"), Matches{});  // invalid UTF-8: no matches, no crash
  auto bad = Pattern::Regex("(unclosed");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("(unclosed"), std::string::npos);
}

}  // namespace
}  // namespace moeserve
