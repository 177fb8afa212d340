#include "tokenizer/utf8.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

const std::string kFffd(kReplacementUtf8);

// Expected values are what Rust's String::from_utf8_lossy (and Python's
// bytes.decode("utf-8", "replace")) give.
TEST(Utf8Test, SanitizeReplacesMaximalSubparts) {
  EXPECT_EQ(SanitizeUtf8("plain ascii"), "plain ascii");
  EXPECT_EQ(SanitizeUtf8("日本 😀"), "日本 😀");
  EXPECT_EQ(SanitizeUtf8("\xff"), kFffd);
  EXPECT_EQ(SanitizeUtf8("caf\xc3"), "caf" + kFffd);        // truncated 2-byte
  EXPECT_EQ(SanitizeUtf8("\xe4\xb8 end"), kFffd + " end");  // truncated 3-byte
  EXPECT_EQ(SanitizeUtf8("\xf0\x9f\x98"), kFffd);           // truncated 4-byte
  EXPECT_EQ(SanitizeUtf8("a\x80"
                         "b"),
            "a" + kFffd + "b");                                                // lone continuation
  EXPECT_EQ(SanitizeUtf8("\xc0\xaf"), kFffd + kFffd);                          // overlong
  EXPECT_EQ(SanitizeUtf8("\xe0\x80\xaf"), kFffd + kFffd + kFffd);              // overlong 3-byte
  EXPECT_EQ(SanitizeUtf8("\xed\xa0\x80"), kFffd + kFffd + kFffd);              // surrogate
  EXPECT_EQ(SanitizeUtf8("\xf4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // > U+10FFFF
  EXPECT_EQ(SanitizeUtf8("\xe4\xb8\xe4\xb8\xad"), kFffd + "中");
  EXPECT_EQ(SanitizeUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8Test, Validity) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ÅngströM 中文 👨‍👩‍👧"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));
  size_t bad = 0;
  EXPECT_EQ(Utf8SequenceLength("\xf0\x9f\x98x", 0, &bad), 0u);
  EXPECT_EQ(bad, 3u);
  EXPECT_EQ(Utf8SequenceLength("\xf0\x9f\x98\x80", 0, &bad), 4u);
}

TEST(Utf8Test, EncodeDecodeRoundTrip) {
  for (char32_t c : {U'a', U'\u00e9', U'\u4e2d', U'\U0001F600', U'\U0010FFFF'}) {
    const std::string s = EncodeUtf8(c);
    size_t pos = 0;
    EXPECT_EQ(DecodeValidUtf8(s, &pos), c);
    EXPECT_EQ(pos, s.size());
    EXPECT_EQ(Utf8CharLength(static_cast<unsigned char>(s[0])), s.size());
  }
  EXPECT_EQ(CountUtf8Chars("a中😀"), 3u);
}

TEST(Utf8Test, CharacterClasses) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\u0085', U'\u00a0', U'\u2003', U'\u3000'}) {
    EXPECT_TRUE(IsUnicodeWhitespace(c)) << static_cast<int>(c);
  }
  for (char32_t c : {U'a', U'\u180e', U'\ufeff', U'\u200b', U'\u001c'}) {
    EXPECT_FALSE(IsUnicodeWhitespace(c)) << static_cast<int>(c);
  }
  EXPECT_TRUE(IsPythonWhitespace(U'\u001c'));
  EXPECT_TRUE(IsUnicodeNumeric(U'7'));
  EXPECT_TRUE(IsUnicodeNumeric(U'\u0663'));  // Arabic-Indic three
  EXPECT_TRUE(IsUnicodeNumeric(U'\u00bd'));  // ½ (No)
  EXPECT_FALSE(IsUnicodeNumeric(U'x'));
  EXPECT_TRUE(IsUnicodeWordChar(U'_'));
  EXPECT_TRUE(IsUnicodeWordChar(U'\u0330'));  // combining mark
  EXPECT_TRUE(IsUnicodeWordChar(U'\u4e2d'));
  EXPECT_FALSE(IsUnicodeWordChar(U'-'));
  EXPECT_FALSE(IsUnicodeWordChar(U','));
}

TEST(Utf8Test, LowercaseUsesFullMapping) {
  std::string out;
  for (char32_t c : {U'A', U'\u0130', U'\u03a3', U'\u00c5'}) AppendLowercase(c, &out);
  EXPECT_EQ(out, "ai\xcc\x87\xcf\x83\xc3\xa5");  // "ai̇σå"
}

}  // namespace
}  // namespace moeserve
