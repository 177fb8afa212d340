#include "tokenizer/normalizer.h"

#include "gtest/gtest.h"

namespace moeserve {
namespace {

TEST(NormalizerTest, UnicodeForms) {
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfc)->Normalize("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfd)->Normalize("caf\u00e9"), "cafe\u0301");
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfkc)->Normalize("\ufb01 \u00bd \uff26"),
            "fi 1\u20442 F");
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfkd)->Normalize("\u00c5"), "A\u030a");
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfc)->Normalize("ascii"), "ascii");
}

TEST(NormalizerTest, LowercaseStripPrepend) {
  EXPECT_EQ(NewLowercaseNormalizer()->Normalize("\u0130STANBUL \u03a3"), "i\u0307stanbul \u03c3");
  EXPECT_EQ(NewStripNormalizer(true, true)->Normalize("\u3000 a b \u00a0"), "a b");
  EXPECT_EQ(NewStripNormalizer(false, true)->Normalize("  a  "), "  a");
  EXPECT_EQ(NewStripNormalizer(true, false)->Normalize("   "), "");
  EXPECT_EQ(NewPrependNormalizer("\u2581")->Normalize("hi"), "\u2581hi");
  EXPECT_EQ(NewPrependNormalizer("\u2581")->Normalize(""), "");
}

TEST(NormalizerTest, ReplaceAndSequence) {
  EXPECT_EQ(NewReplaceNormalizer(Pattern::Literal(" "), "\u2581")->Normalize("a b  c"),
            "a\u2581b\u2581\u2581c");
  EXPECT_EQ(NewReplaceNormalizer(*Pattern::Regex(" {2,}"), " ")->Normalize("a    b c"), "a b c");
  // Llama-2's normalizer.
  std::vector<std::unique_ptr<Normalizer>> steps;
  steps.push_back(NewPrependNormalizer("\u2581"));
  steps.push_back(NewReplaceNormalizer(Pattern::Literal(" "), "\u2581"));
  EXPECT_EQ(NewSequenceNormalizer(std::move(steps))->Normalize("Hello world"),
            "\u2581Hello\u2581world");
}

// Apply tracks how many leading bytes stem from the input's first character.
TEST(NormalizerTest, OriginTracking) {
  size_t origin = 1;
  EXPECT_EQ(NewStripNormalizer(true, true)->Apply(" a", &origin), "a");
  EXPECT_EQ(origin, 0u);  // the first character was stripped
  origin = 1;
  EXPECT_EQ(NewPrependNormalizer("\u2581")->Apply("a", &origin), "\u2581a");
  EXPECT_EQ(origin, 4u);  // the prefix is aligned with the first character
  origin = 2;
  EXPECT_EQ(NewUnicodeNormalizer(UnicodeForm::kNfkc)->Apply("\u00bdx", &origin), "1\u20442x");
  EXPECT_EQ(origin, 5u);  // "1⁄2" all stem from "½"
  origin = 1;
  EXPECT_EQ(NewReplaceNormalizer(Pattern::Literal(" "), "")->Apply(" ab", &origin), "ab");
  EXPECT_EQ(origin, 0u);
  origin = 1;
  EXPECT_EQ(NewReplaceNormalizer(Pattern::Literal(" "), "\u2581")->Apply(" ab", &origin),
            "\u2581ab");
  EXPECT_EQ(origin, 3u);
  origin = 0;
  EXPECT_EQ(NewLowercaseNormalizer()->Apply("AB", &origin), "ab");
  EXPECT_EQ(origin, 0u);
}

}  // namespace
}  // namespace moeserve
