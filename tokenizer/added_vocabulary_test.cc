#include "tokenizer/added_vocabulary.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

using Pieces = std::vector<std::pair<std::string, int32_t>>;

AddedToken Token(int32_t id, std::string content) {
  AddedToken t;
  t.id = id;
  t.content = std::move(content);
  return t;
}

Pieces SplitText(const AddedVocabulary& v, std::string_view text, const Normalizer* n) {
  Pieces out;
  for (const AddedPiece& p : v.Split(text, n)) out.emplace_back(p.text, p.id);
  return out;
}

constexpr int32_t kNone = AddedPiece::kNoId;

// The cases of HF's added_vocabulary.rs unit tests.
TEST(AddedVocabularyTest, OptionsUseCases) {
  const auto lowercase = NewLowercaseNormalizer();
  AddedToken my = Token(0, "my");
  my.lstrip = my.rstrip = true;
  AddedToken name = Token(1, "name");
  AddedToken ony = Token(2, "ony");
  ony.single_word = true;
  AddedToken cls = Token(3, "[CLS]");
  cls.special = true;
  cls.normalized = false;
  AddedToken sep = Token(4, "[SEP]");
  sep.special = true;
  sep.normalized = false;
  AddedVocabulary v({my, name, ony, cls, sep}, lowercase.get());
  EXPECT_EQ(
      SplitText(v, "[CLS] My name is Anthony [SEP]", lowercase.get()),
      (Pieces{{"[CLS]", 3}, {" my ", 0}, {"name", 1}, {" is anthony ", kNone}, {"[SEP]", 4}}));
}

TEST(AddedVocabularyTest, SingleWord) {
  const auto lowercase = NewLowercaseNormalizer();
  AddedToken mask = Token(0, "<mask>");
  mask.single_word = true;
  AddedVocabulary v({mask}, lowercase.get());
  EXPECT_EQ(SplitText(v, "<mask> My name <mask> A<mask> <mask>ony <mask>", lowercase.get()),
            (Pieces{{"<mask>", 0},
                    {" my name ", kNone},
                    {"<mask>", 0},
                    {" a<mask> <mask>ony ", kNone},
                    {"<mask>", 0}}));
  // Punctuation is not a word character; a combining mark is.
  EXPECT_EQ(SplitText(v, "<mask>, <mask>- \u25cc\u0330<mask>", lowercase.get()),
            (Pieces{{"<mask>", 0}, {", ", kNone}, {"<mask>", 0}, {"- \u25cc\u0330<mask>", kNone}}));
}

TEST(AddedVocabularyTest, StripUnicodeSpaces) {
  const auto lowercase = NewLowercaseNormalizer();
  AddedToken mask = Token(0, "<mask>");
  mask.single_word = mask.lstrip = mask.rstrip = true;
  AddedVocabulary v({mask}, lowercase.get());
  EXPECT_EQ(SplitText(v, "Hi <mask> there\t<mask>\t<mask>\u2000", lowercase.get()),
            (Pieces{{"hi", kNone},
                    {" <mask> ", 0},
                    {"there", kNone},
                    {"\t<mask>\t", 0},
                    {"<mask>\u2000", 0}}));
}

TEST(AddedVocabularyTest, LongestMatchAndNormalizedContent) {
  AddedToken a = Token(10, "<|im");
  a.normalized = false;
  AddedToken b = Token(11, "<|im_start|>");
  b.normalized = false;
  AddedToken c = Token(12, "Hello");  // normalized: matched as "hello"
  const auto lowercase = NewLowercaseNormalizer();
  AddedVocabulary v({a, b, c}, lowercase.get());
  EXPECT_EQ(SplitText(v, "<|im_start|><|imX HELLO", lowercase.get()),
            (Pieces{{"<|im_start|>", 11}, {"<|im", 10}, {"x ", kNone}, {"hello", 12}}));
  EXPECT_EQ(*v.IdToToken(12), "hello");  // HF's id_to_token gives the normalized form
  EXPECT_EQ(*v.IdToToken(11), "<|im_start|>");
  EXPECT_EQ(v.IdToToken(99), nullptr);
  EXPECT_EQ(*v.FindByContent("Hello"), 12);
}

TEST(AddedVocabularyTest, SpecialAndOrigin) {
  AddedToken s = Token(1, "<s>");
  s.special = true;
  s.normalized = false;
  AddedVocabulary v({s}, nullptr);
  EXPECT_TRUE(v.IsSpecialContent("<s>"));
  EXPECT_FALSE(v.IsSpecialContent("x"));
  const auto pieces = v.Split("ab<s>cd", nullptr);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].origin_bytes, 1u);  // "a" is the input's first character
  EXPECT_EQ(pieces[2].origin_bytes, 0u);
  EXPECT_TRUE(v.Split("", nullptr).empty());
}

}  // namespace
}  // namespace moeserve
