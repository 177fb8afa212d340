#include "tokenizer/bpe_model.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

using Vocab = std::vector<std::pair<std::string, int32_t>>;
using Merges = std::vector<std::pair<std::string, std::string>>;

std::unique_ptr<BpeModel> Make(const Vocab& vocab, const Merges& merges, BpeOptions options = {}) {
  auto model = BpeModel::Create(vocab, merges, std::move(options));
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

std::vector<int32_t> Ids(const BpeModel& model, std::string_view word) {
  std::vector<int32_t> ids;
  model.Tokenize(word, &ids);
  return ids;
}

const Vocab kAbc = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"aa", 6}};

TEST(BpeModelTest, MergesByRank) {
  // "a b" outranks "b c": a+b first, then "ab c".
  auto model = Make(kAbc, {{"a", "b"}, {"b", "c"}, {"ab", "c"}});
  EXPECT_EQ(Ids(*model, "abc"), (std::vector<int32_t>{5}));
  // "b c" first, and no "a bc" merge: stuck at a + bc.
  model = Make(kAbc, {{"b", "c"}, {"a", "b"}, {"ab", "c"}});
  EXPECT_EQ(Ids(*model, "abc"), (std::vector<int32_t>{0, 4}));
}

TEST(BpeModelTest, LeftmostWinsTies) {
  auto model = Make(kAbc, {{"a", "a"}});
  EXPECT_EQ(Ids(*model, "aaa"), (std::vector<int32_t>{6, 0}));
  EXPECT_EQ(Ids(*model, "aaaa"), (std::vector<int32_t>{6, 6}));
}

TEST(BpeModelTest, RepeatedMergeKeepsLastRank) {
  // As HF's HashMap collect: the second "a b" (rank 2) replaces rank 0, so
  // "b c" (rank 1) now goes first.
  auto model = Make(kAbc, {{"a", "b"}, {"b", "c"}, {"a", "b"}});
  EXPECT_EQ(Ids(*model, "abc"), (std::vector<int32_t>{0, 4}));
}

TEST(BpeModelTest, ByteFallback) {
  Vocab vocab = {{"<unk>", 0}, {"a", 1}, {"<0xC3>", 2}, {"<0xA4>", 3}};
  BpeOptions options;
  options.byte_fallback = true;
  options.unk_token = "<unk>";
  auto model = Make(vocab, {}, options);
  EXPECT_EQ(Ids(*model, "a\u00e4"), (std::vector<int32_t>{1, 2, 3}));
  // No byte tokens for "中": the unknown token.
  EXPECT_EQ(Ids(*model, "\u4e2d"), (std::vector<int32_t>{0}));
}

TEST(BpeModelTest, UnknownTokenFusedOrNot) {
  Vocab vocab = {{"<unk>", 0}, {"a", 1}};
  BpeOptions options;
  options.unk_token = "<unk>";
  options.fuse_unk = true;
  EXPECT_EQ(Ids(*Make(vocab, {}, options), "xyza"), (std::vector<int32_t>{0, 1}));
  options.fuse_unk = false;
  EXPECT_EQ(Ids(*Make(vocab, {}, options), "xyza"), (std::vector<int32_t>{0, 0, 0, 1}));
  // Without an unknown token, unknown characters are dropped.
  EXPECT_EQ(Ids(*Make(vocab, {}), "xay"), (std::vector<int32_t>{1}));
}

TEST(BpeModelTest, IgnoreMerges) {
  Vocab vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"bc", 3}, {"abc", 4}};
  BpeOptions options;
  options.ignore_merges = true;
  EXPECT_EQ(Ids(*Make(vocab, {{"b", "c"}}, options), "abc"), (std::vector<int32_t>{4}));
  EXPECT_EQ(Ids(*Make(vocab, {{"b", "c"}}), "abc"), (std::vector<int32_t>{0, 3}));
}

TEST(BpeModelTest, SubwordPrefixAndSuffix) {
  Vocab vocab = {{"a", 0},  {"##b", 1},       {"##c</w>", 2}, {"a##b", 3},
                 {"ab", 4}, {"ab##c</w>", 5}, {"abc</w>", 6}};
  BpeOptions options;
  options.continuing_subword_prefix = "##";
  options.end_of_word_suffix = "</w>";
  // "a" + "##b" merges to "ab" (the prefix of the right part is dropped).
  auto model = Make(vocab, {{"a", "##b"}, {"ab", "##c</w>"}}, options);
  EXPECT_EQ(Ids(*model, "abc"), (std::vector<int32_t>{6}));
}

TEST(BpeModelTest, CacheGivesSameAnswer) {
  auto model = Make(kAbc, {{"a", "b"}, {"ab", "c"}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Ids(*model, "abcab"), (std::vector<int32_t>{5, 3}));
}

TEST(BpeModelTest, BadMergesAreErrors) {
  auto model = BpeModel::Create(kAbc, {{"a", "b"}, {"a", "z"}}, {});
  ASSERT_FALSE(model.ok());
  EXPECT_NE(std::string(model.status().message()).find("merges[1]"), std::string::npos);
  EXPECT_NE(std::string(model.status().message()).find("\"z\""), std::string::npos);
  model = BpeModel::Create(kAbc, {{"c", "a"}}, {});  // "ca" is not in the vocab
  ASSERT_FALSE(model.ok());
  EXPECT_NE(std::string(model.status().message()).find("\"ca\""), std::string::npos);
}

TEST(BpeModelTest, Accessors) {
  auto model = Make({{"x", 0}, {"y", 7}}, {});
  EXPECT_EQ(model->IdLimit(), 8);
  EXPECT_EQ(model->VocabSize(), 2u);
  EXPECT_EQ(*model->TokenToId("y"), 7);
  EXPECT_EQ(*model->IdToToken(7), "y");
  EXPECT_EQ(model->IdToToken(3), nullptr);
  EXPECT_EQ(model->IdToToken(-1), nullptr);
  EXPECT_EQ(model->IdToToken(100), nullptr);
}

}  // namespace
}  // namespace moeserve
