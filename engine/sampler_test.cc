#include "engine/sampler.h"

#include <cmath>
#include <map>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

TEST(SamplerTest, GreedyTakesTheFirstMaximum) {
  const float logits[] = {0.5f, 3.0f, -1.0f, 3.0f};
  Sampler sampler({0.0f, 1});
  EXPECT_EQ(sampler.Sample(logits, 4), 1);
}

TEST(SamplerTest, SameSeedSameDraws) {
  const float logits[] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
  Sampler a({1.0f, 42}), b({1.0f, 42}), c({1.0f, 43});
  int differ = 0;
  for (int i = 0; i < 50; ++i) {
    const int32_t x = a.Sample(logits, 5);
    EXPECT_EQ(x, b.Sample(logits, 5));
    differ += x != c.Sample(logits, 5);
  }
  EXPECT_GT(differ, 0);
}

TEST(SamplerTest, FrequenciesFollowSoftmaxOfScaledLogits) {
  const float logits[] = {1.0f, 2.0f, 0.0f};
  const float temperature = 0.7f;
  Sampler sampler({temperature, 7});
  std::map<int32_t, int> counts;
  const int draws = 60000;
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits, 3)];
  double z = 0;
  for (float l : logits) z += std::exp(l / temperature);
  for (int i = 0; i < 3; ++i) {
    const double p = std::exp(logits[i] / temperature) / z;
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(counts[i] / double(draws), p, 5 * std::sqrt(p * (1 - p) / draws)) << i;
  }
}

}  // namespace
}  // namespace moeserve
