#include "router/api_keys.h"

#include <cstdio>
#include <fstream>

#include "gtest/gtest.h"

namespace moeserve {
namespace router {
namespace {

TEST(ApiKeys, NoKeysLetsEverythingIn) {
  ApiKeys keys;
  EXPECT_FALSE(keys.enabled());
  EXPECT_TRUE(keys.Allows(""));
}

TEST(ApiKeys, BearerTokensFromFileAndEnvironment) {
  const std::string path = ::testing::TempDir() + "/keys";
  {
    std::ofstream out(path);
    out << "# keys\n  sk-one  \n\nsk-two\n";
  }
  auto keys = ApiKeys::Load(path, "sk-env");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->enabled());
  EXPECT_TRUE(keys->Allows("Bearer sk-one"));
  EXPECT_TRUE(keys->Allows("bearer sk-two"));
  EXPECT_TRUE(keys->Allows("Bearer sk-env"));
  EXPECT_FALSE(keys->Allows("Bearer sk-on"));
  EXPECT_FALSE(keys->Allows("Bearer sk-one1"));
  EXPECT_FALSE(keys->Allows("sk-one"));
  EXPECT_FALSE(keys->Allows(""));
  EXPECT_FALSE(keys->Allows("Bearer # keys"));
}

TEST(ApiKeys, BadFilesAreErrors) {
  EXPECT_EQ(ApiKeys::Load("/nonexistent/keys", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string path = ::testing::TempDir() + "/empty";
  { std::ofstream out(path); out << "# nothing\n\n"; }
  EXPECT_EQ(ApiKeys::Load(path, "").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace router
}  // namespace moeserve
