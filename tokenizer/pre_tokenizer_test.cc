#include "tokenizer/pre_tokenizer.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

using Texts = std::vector<std::string>;

Texts PreTok(const PreTokenizer& p, const std::string& text, size_t origin = 1) {
  std::vector<PreToken> pieces = {{text, origin}};
  p.PreTokenize(&pieces);
  Texts out;
  for (const PreToken& piece : pieces) out.push_back(piece.text);
  return out;
}

Texts Split(SplitBehavior behavior, bool invert, const std::string& text) {
  return PreTok(*NewSplitPreTokenizer(Pattern::Literal("-"), behavior, invert), text);
}

// Expected values are those of HF's splitPreTokenizer on the same input.
TEST(PreTokenizerTest, SplitBehaviors) {
  const std::string text = "a-b--c-";
  EXPECT_EQ(Split(SplitBehavior::kRemoved, false, text), (Texts{"a", "b", "c"}));
  EXPECT_EQ(Split(SplitBehavior::kIsolated, false, text),
            (Texts{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(Split(SplitBehavior::kMergedWithPrevious, false, text), (Texts{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(Split(SplitBehavior::kMergedWithNext, false, text), (Texts{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(Split(SplitBehavior::kContiguous, false, text), (Texts{"a", "-", "b", "--", "c", "-"}));
  EXPECT_EQ(Split(SplitBehavior::kRemoved, true, text), (Texts{"-", "-", "-", "-"}));
  EXPECT_EQ(Split(SplitBehavior::kMergedWithPrevious, true, text),
            (Texts{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(Split(SplitBehavior::kMergedWithNext, true, text), (Texts{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(Split(SplitBehavior::kMergedWithNext, false, "-a"), (Texts{"-a"}));
}

TEST(PreTokenizerTest, ByteLevel) {
  EXPECT_EQ(PreTok(*NewByteLevelPreTokenizer(true, true), "Hello  world\n"),
            (Texts{"\u0120Hello", "\u0120", "\u0120world", "\u010a"}));
  EXPECT_EQ(PreTok(*NewByteLevelPreTokenizer(false, true), "I'm \u00e9"),
            (Texts{"I", "'m", "\u0120\u00c3\u00a9"}));
  EXPECT_EQ(PreTok(*NewByteLevelPreTokenizer(true, false), "a b"), (Texts{"\u0120a\u0120b"}));
}

TEST(PreTokenizerTest, Metaspace) {
  EXPECT_EQ(
      PreTok(*NewMetaspacePreTokenizer("\u2581", PrependScheme::kAlways, true), "Hey  friend!"),
      (Texts{"\u2581Hey", "\u2581", "\u2581friend!"}));
  EXPECT_EQ(
      PreTok(*NewMetaspacePreTokenizer("\u2581", PrependScheme::kNever, false), "Hey  friend!"),
      (Texts{"Hey\u2581\u2581friend!"}));
  const auto first = NewMetaspacePreTokenizer("\u2581", PrependScheme::kFirst, true);
  EXPECT_EQ(PreTok(*first, "a b", /*origin=*/1), (Texts{"\u2581a", "\u2581b"}));
  EXPECT_EQ(PreTok(*first, "a b", /*origin=*/0), (Texts{"a", "\u2581b"}));
}

TEST(PreTokenizerTest, DigitsAndSequence) {
  EXPECT_EQ(PreTok(*NewDigitsPreTokenizer(true), "a123b\u0663"),
            (Texts{"a", "1", "2", "3", "b", "\u0663"}));
  EXPECT_EQ(PreTok(*NewDigitsPreTokenizer(false), "a123b"), (Texts{"a", "123", "b"}));
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  steps.push_back(NewDigitsPreTokenizer(true));
  steps.push_back(NewMetaspacePreTokenizer("\u2581", PrependScheme::kFirst, true));
  // Only the piece at the start of the input gets the prefix.
  EXPECT_EQ(PreTok(*NewSequencePreTokenizer(std::move(steps)), "x12 y"),
            (Texts{"\u2581x", "1", "2", "\u2581y"}));
}

TEST(PreTokenizerTest, OriginBytesFollowSplits) {
  std::vector<PreToken> pieces = {{"ab-cd", 2}};
  NewSplitPreTokenizer(Pattern::Literal("-"), SplitBehavior::kIsolated, false)
      ->PreTokenize(&pieces);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].origin_bytes, 2u);
  EXPECT_EQ(pieces[1].origin_bytes, 0u);
  EXPECT_EQ(pieces[2].origin_bytes, 0u);
}

}  // namespace
}  // namespace moeserve
