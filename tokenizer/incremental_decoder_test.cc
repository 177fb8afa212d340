#include "tokenizer/incremental_decoder.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "gtest/gtest.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

using Ids = std::vector<int32_t>;

// Llama-2 shaped: ▁-words, byte fallback for everything else.
std::unique_ptr<Tokenizer> ByteFallbackTokenizer() {
  nlohmann::json vocab = {{"<unk>", 0},       {"<s>", 1},         {"</s>", 2}, {"\u2581", 3},
                          {"\u2581Hello", 4}, {"\u2581world", 5}, {"!", 6}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 7 + b;
  }
  const nlohmann::json doc = {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\u2581"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}}};
  return std::move(*Tokenizer::FromJson(doc.dump(), "byte_fallback"));
}

// GPT-2 shaped: the byte alphabet and nothing else.
std::unique_ptr<Tokenizer> ByteLevelTokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[std::string(ByteLevelChar(b))] = b;
  vocab["<|end|>"] = 256;
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  const nlohmann::json doc = {
      {"added_tokens",
       {{{"id", 256}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}}}},
      {"pre_tokenizer", byte_level},
      {"decoder", byte_level},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  return std::move(*Tokenizer::FromJson(doc.dump(), "byte_level"));
}

struct Streamed {
  std::vector<std::string> chunks;
  std::string text;
};

Streamed Stream(const Tokenizer& tok, const Ids& ids, bool skip_special) {
  IncrementalDecoder stream(&tok, skip_special);
  Streamed out;
  for (int32_t id : ids) out.chunks.push_back(stream.Append(id));
  out.chunks.push_back(stream.Flush());
  for (const std::string& chunk : out.chunks) out.text += chunk;
  return out;
}

TEST(IncrementalDecoderTest, HoldsBackIncompleteCharacters) {
  const auto tok = ByteLevelTokenizer();
  // "中" is E4 B8 AD; "😀" is F0 9F 98 80.
  const Streamed s = Stream(*tok, {'a', 0xE4, 0xB8, 0xAD, 0xF0, 0x9F, 0x98, 0x80, '!'}, false);
  EXPECT_EQ(s.chunks,
            (std::vector<std::string>{"a", "", "", "\u4e2d", "", "", "", "\U0001F600", "!", ""}));
  // A truncated character at the end comes out of Flush as Decode shows it.
  const Streamed t = Stream(*tok, {'a', 0xE4, 0xB8}, false);
  EXPECT_EQ(t.chunks, (std::vector<std::string>{"a", "", "", "\ufffd"}));
}

TEST(IncrementalDecoderTest, ByteFallbackRunsWaitForTheirEnd) {
  const auto tok = ByteFallbackTokenizer();
  const int32_t e4 = 7 + 0xE4, b8 = 7 + 0xB8, ad = 7 + 0xAD;
  // A later byte can turn a run into U+FFFDs (HF's ByteFallback), so the run
  // is held until a non-byte token or Flush.
  const Streamed s = Stream(*tok, {4, e4, b8, ad, 5}, false);
  EXPECT_EQ(s.chunks, (std::vector<std::string>{"Hello", "", "", "", "\u4e2d world", ""}));
  const Ids broken = {4, e4, b8, ad, e4};
  EXPECT_EQ(Stream(*tok, broken, false).text, tok->Decode(broken, false));
}

TEST(IncrementalDecoderTest, LeadingSpaceRulesMatchDecode) {
  const auto tok = ByteFallbackTokenizer();
  const Ids ids = {1, 4, 3, 5, 6, 2};  // <s> ▁Hello ▁ ▁world ! </s>
  EXPECT_EQ(Stream(*tok, ids, false).text, "<s> Hello  world!</s>");
  EXPECT_EQ(Stream(*tok, ids, true).text, "Hello  world!");
  EXPECT_EQ(Stream(*tok, ids, true).text, tok->Decode(ids, true));
}

TEST(IncrementalDecoderTest, ContextGivesTheLeadingSpace) {
  const auto tok = ByteFallbackTokenizer();
  IncrementalDecoder stream(tok.get(), true, /*context=*/{1, 4});
  EXPECT_EQ(stream.Append(5), " world");
  EXPECT_EQ(stream.Append(6), "!");
  EXPECT_EQ(stream.Flush(), "");
}

// Random id sequences (valid text, broken byte runs, special and
// out-of-range ids): the stream always equals Decode and every chunk is
// valid UTF-8.
TEST(IncrementalDecoderTest, RandomStreamsEqualDecode) {
  const auto byte_fallback = ByteFallbackTokenizer();
  const auto byte_level = ByteLevelTokenizer();
  std::mt19937 rng(42);
  for (int iteration = 0; iteration < 2000; ++iteration) {
    const Tokenizer& tok = iteration % 2 == 0 ? *byte_fallback : *byte_level;
    Ids ids;
    if (iteration % 3 == 0) {
      // The encoding of random text with multi-byte characters.
      const char* pieces[] = {"\u4e2d", "\U0001F600", "\u00e4", " ",   "Hello",
                              " world", "!",          "\xe4",   "\xff"};
      std::string text;
      for (int k = rng() % 10; k > 0; --k) text += pieces[rng() % 9];
      ids = tok.Encode(text, true);
    } else {
      for (int k = rng() % 12; k > 0; --k) {
        const int kind = rng() % 8;
        ids.push_back(kind == 0   ? static_cast<int32_t>(rng() % 4)                  // specials
                      : kind == 1 ? static_cast<int32_t>(rng() % 600) - 50           // anything
                                  : static_cast<int32_t>(7 + 0x80 + rng() % 0x78));  // high bytes
      }
    }
    for (bool skip : {false, true}) {
      const Streamed s = Stream(tok, ids, skip);
      ASSERT_EQ(s.text, tok.Decode(ids, skip)) << "iteration " << iteration;
      for (const std::string& chunk : s.chunks) ASSERT_TRUE(IsValidUtf8(chunk));
    }
  }
}

}  // namespace
}  // namespace moeserve
