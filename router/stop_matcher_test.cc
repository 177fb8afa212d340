#include "router/stop_matcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve {
namespace router {
namespace {

// Pushes `pieces` in order; returns everything released (Flush included
// when no stop string matched).
std::string Feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) {
    out += m.Push(p);
    if (m.stopped()) return out;
  }
  return out + m.Flush();
}

TEST(StopMatcherTest, NoMatchReleasesEverythingInOrder) {
  StopMatcher m({"xyz"});
  EXPECT_EQ(m.Push("hello "), "hello ");
  EXPECT_EQ(m.Push("wor"), "wor");
  EXPECT_EQ(m.Push("ld"), "ld");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, MatchInsideOnePiece) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.Push("abc"), "abc");
  EXPECT_EQ(m.Push("deSTOPfg"), "de");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, MatchAcrossPiecesHoldsBackThePrefix) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.Push("abST"), "ab");
  EXPECT_EQ(m.held(), "ST");
  EXPECT_EQ(m.Push("O"), "");
  EXPECT_EQ(m.held(), "STO");
  EXPECT_EQ(m.Push("Pzz"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, FailedPartialMatchIsReleased) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.Push("aST"), "a");
  EXPECT_EQ(m.Push("OX"), "STOX");
  EXPECT_FALSE(m.stopped());
  // A failed match that ends in a new beginning keeps only that.
  EXPECT_EQ(m.Push("SS"), "S");
  EXPECT_EQ(m.Push("TOS"), "STO");  // "STOS": only the last "S" may still start one
  EXPECT_EQ(m.held(), "S");
  EXPECT_EQ(m.Flush(), "S");
}

TEST(StopMatcherTest, OverlappingSelfPrefix) {
  // "aab" inside "aaab": the first "a" is released, the match found.
  StopMatcher m({"aab"});
  EXPECT_EQ(Feed(m, {"a", "a", "a", "b", "c"}), "a");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, EarliestOccurrenceWins) {
  StopMatcher m({"world", "lo"});
  EXPECT_EQ(Feed(m, {"hello world"}), "hel");
  StopMatcher split({"world", "o w"});
  EXPECT_EQ(Feed(split, {"hell", "o", " ", "wor", "ld"}), "hell");
}

TEST(StopMatcherTest, HoldsTheLongestPrefixOfAnyString) {
  StopMatcher m({"abcd", "bcx"});
  EXPECT_EQ(m.Push("zabc"), "z");  // "abc" (of "abcd") beats "bc" (of "bcx")
  EXPECT_EQ(m.Push("x"), "a");     // "bcx" matched
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, MultibyteStopKeepsUtf8Whole) {
  StopMatcher m({"\xC3\xA9t\xC3\xA9"});  // "été"
  EXPECT_EQ(m.Push("caf\xC3\xA9"), "caf");
  EXPECT_EQ(m.Push("!"), "\xC3\xA9!");
  EXPECT_EQ(m.Push("\xC3\xA9t"), "");
  EXPECT_EQ(m.Push("\xC3\xA9 ok"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, StopAtTheVeryStartReleasesNothing) {
  StopMatcher m({"Hi"});
  EXPECT_EQ(m.Push("H"), "");
  EXPECT_EQ(m.Push("i there"), "");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace router
}  // namespace moeserve
