#include "tokenizer/decoder.h"

#include "gtest/gtest.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

const std::string kFffd(kReplacementUtf8);

TEST(DecoderTest, ByteLevel) {
  const auto d = NewByteLevelDecoder();
  EXPECT_EQ(RunDecoder(d.get(), {"Hello", "\u0120world", "\u010a"}), "Hello world\n");
  // "中" split over two tokens, then a lone lead byte: from_utf8_lossy.
  EXPECT_EQ(RunDecoder(d.get(), {"\u00e4\u00b8", "\u0143", "\u00e4"}), "\u4e2d" + kFffd);
  // A token outside the alphabet contributes its own UTF-8.
  EXPECT_EQ(RunDecoder(d.get(), {"<|im_start|>", "\u2581x"}), "<|im_start|>\u2581x");
}

TEST(DecoderTest, Metaspace) {
  EXPECT_EQ(RunDecoder(NewMetaspaceDecoder("\u2581", PrependScheme::kAlways).get(),
                       {"\u2581Hey", "\u2581friend!"}),
            "Hey friend!");
  EXPECT_EQ(RunDecoder(NewMetaspaceDecoder("\u2581", PrependScheme::kNever).get(),
                       {"\u2581Hey", "\u2581friend!"}),
            " Hey friend!");
  // As in HF, every replacement character of the first token is dropped.
  EXPECT_EQ(RunDecoder(NewMetaspaceDecoder("\u2581", PrependScheme::kFirst).get(),
                       {"\u2581a\u2581b", "\u2581c"}),
            "ab c");
}

TEST(DecoderTest, ByteFallback) {
  const auto d = NewByteFallbackDecoder();
  EXPECT_EQ(RunDecoder(d.get(), {"a", "<0xE4>", "<0xB8>", "<0xAD>", "b"}), "a\u4e2db");
  // An invalid run becomes one U+FFFD per byte (not from_utf8_lossy).
  EXPECT_EQ(RunDecoder(d.get(), {"<0xE4>", "<0xB8>", "x", "<0xFF>"}), kFffd + kFffd + "x" + kFffd);
  EXPECT_EQ(RunDecoder(d.get(), {"<0x41>", "<0x4>", "<0xZZ>"}), "A<0x4><0xZZ>");
  EXPECT_EQ(ParseByteFallbackToken("<0x0A>"), 10);
  EXPECT_EQ(ParseByteFallbackToken("<0x0a>"), 10);
  EXPECT_EQ(ParseByteFallbackToken("<0x0A"), -1);
}

TEST(DecoderTest, StripAndFuse) {
  EXPECT_EQ(RunDecoder(NewStripDecoder(U' ', 1, 0).get(), {"  a", " b "}), " ab ");
  EXPECT_EQ(RunDecoder(NewStripDecoder(U'x', 2, 3).get(), {"xxxaxx", "", "x"}), "xa");
  std::vector<std::string> tokens = {"a", "b"};
  NewFuseDecoder()->DecodeChain(&tokens);
  EXPECT_EQ(tokens, (std::vector<std::string>{"ab"}));
}

// Llama-2's decoder; expected value from HF's own decoders on these tokens.
TEST(DecoderTest, Llama2Sequence) {
  std::vector<std::unique_ptr<Decoder>> steps;
  steps.push_back(NewReplaceDecoder(Pattern::Literal("\u2581"), " "));
  steps.push_back(NewByteFallbackDecoder());
  steps.push_back(NewFuseDecoder());
  steps.push_back(NewStripDecoder(U' ', 1, 0));
  const auto d = NewSequenceDecoder(std::move(steps));
  EXPECT_TRUE(d->UsesByteFallback());
  EXPECT_EQ(RunDecoder(d.get(), {"\u2581Hello", "<0xE4>", "<0xB8>", "<0xAD>", "<0xE4>", "\u2581a",
                                 "<0xFF>"}),
            "Hello" + kFffd + kFffd + kFffd + kFffd + " a" + kFffd);
}

TEST(DecoderTest, NoDecoderJoinsWithSpaces) {
  EXPECT_EQ(RunDecoder(nullptr, {"a", "b"}), "a b");
  EXPECT_EQ(RunDecoder(nullptr, {}), "");
}

}  // namespace
}  // namespace moeserve
