// The sampler: against the float64 reference's golden cases
// (engine/sampler_test_cases.json, from tests/reference/sampling_reference.py: exact
// tokens over multi-step runs with penalties, top-k/p, min-p and seeded
// draws; log-probs within 1e-9 raw, 1e-6 processed, since the C++ rounds the
// penalised logits to float), plus hand-computed cases, statistical checks,
// the original sampler's draws bit for bit, and CheckSamplingParams.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::vector<float> RandomLogits(int vocab, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = normal(rng);
  return logits;
}

std::vector<float> Log(std::vector<double> probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

SamplingParams Greedy() { return SamplingParams{}; }

SamplingParams Temperature(float t, uint64_t seed) {
  SamplingParams p;
  p.temperature = t;
  p.seed = seed;
  return p;
}

// ---- The original sampler ---------------------------------------------------

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

// The sampler as it was before top-k/p, min-p, penalties and log-probs, copied
// verbatim: with temperature and seed only, the new one must draw the same
// tokens (the cluster goldens and kernels/cuda's SampleFromLogits rely on it).
class OriginalSampler {
 public:
  OriginalSampler(float temperature, uint64_t seed) : temperature_(temperature), rng_(seed) {}
  int32_t Sample(const float* logits, int vocab) {
    if (temperature_ <= 0.0f) return Argmax(logits, vocab);
    const double inv_t = 1.0 / temperature_;
    const float max = *std::max_element(logits, logits + vocab);
    probs_.resize(vocab);
    double sum = 0.0;
    for (int i = 0; i < vocab; ++i) {
      probs_[i] = std::exp((logits[i] - max) * inv_t);
      sum += probs_[i];
    }
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
    double acc = 0.0;
    for (int i = 0; i < vocab; ++i) {
      acc += probs_[i];
      if (u < acc) return i;
    }
    for (int i = vocab - 1; i > 0; --i) {
      if (probs_[i] > 0.0) return i;
    }
    return 0;
  }

 private:
  float temperature_;
  std::mt19937_64 rng_;
  std::vector<double> probs_;
};

TEST(SamplerTest, TemperatureOnlyDrawsAsTheOriginalSampler) {
  for (int vocab : {1, 2, 7, 1000, 151936}) {
    const std::vector<float> logits = RandomLogits(vocab, 3.0f, vocab);
    const int steps = vocab > 1000 ? 10 : 300;
    for (float t : {-1.0f, 0.0f, 0.05f, 0.7f, 1.0f, 2.5f}) {
      OriginalSampler original(t, 1234);
      Sampler plain(Temperature(t, 1234)), with_logprobs(Temperature(t, 1234));
      // Penalties on but never triggered (nothing accepted) change nothing either.
      SamplingParams idle = Temperature(t, 1234);
      idle.repetition_penalty = 1.3f;
      Sampler idle_penalties(idle);
      for (int k = 0; k < steps; ++k) {
        const int32_t want = original.Sample(logits.data(), vocab);
        ASSERT_EQ(plain.Sample(logits.data(), vocab), want) << vocab << " " << t << " " << k;
        ASSERT_EQ(with_logprobs.SampleWithLogprobs(logits.data(), vocab).token, want);
        ASSERT_EQ(idle_penalties.Sample(logits.data(), vocab), want);
      }
    }
  }
}

// ---- Golden cases from tests/reference/sampling_reference.py ---------------

SamplingParams ParamsFromJson(const nlohmann::json& j) {
  SamplingParams p;
  p.temperature = j.at("temperature").get<float>();
  p.seed = j.at("seed").get<uint64_t>();
  p.top_k = j.at("top_k").get<int32_t>();
  p.top_p = j.at("top_p").get<float>();
  p.min_p = j.at("min_p").get<float>();
  p.repetition_penalty = j.at("repetition_penalty").get<float>();
  p.presence_penalty = j.at("presence_penalty").get<float>();
  p.frequency_penalty = j.at("frequency_penalty").get<float>();
  p.logprobs = j.at("logprobs").get<int32_t>();
  p.logprobs_mode =
      j.at("logprobs_mode").get<std::string>() == "raw" ? LogprobsMode::kRaw : LogprobsMode::kProcessed;
  return p;
}

double LogprobFromJson(const nlohmann::json& j) { return j.is_null() ? kNegInf : j.get<double>(); }

void ExpectLogprobNear(double got, double want, double tolerance) {
  if (std::isinf(want)) {
    EXPECT_EQ(got, want);
  } else {
    EXPECT_NEAR(got, want, tolerance);
  }
}

TEST(SamplerGoldenTest, MatchesTheFloat64Reference) {
  std::ifstream in("engine/sampler_test_cases.json");
  ASSERT_TRUE(in) << "missing data dependency";
  const nlohmann::json cases = nlohmann::json::parse(in).at("cases");
  ASSERT_GE(cases.size(), 10u);
  int steps_checked = 0;
  for (const nlohmann::json& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const int vocab = c.at("vocab").get<int>();
    const SamplingParams params = ParamsFromJson(c.at("params"));
    ASSERT_TRUE(CheckSamplingParams(params).ok()) << CheckSamplingParams(params);
    const double tolerance = params.logprobs_mode == LogprobsMode::kRaw ? 1e-9 : 1e-6;
    std::vector<std::vector<float>> rows;
    for (const nlohmann::json& row : c.at("logits")) {
      rows.emplace_back();
      for (const nlohmann::json& v : row) rows.back().push_back(static_cast<float>(v.get<double>()));
      ASSERT_EQ(static_cast<int>(rows.back().size()), vocab);
    }
    const std::vector<int32_t> prompt = c.at("prompt").get<std::vector<int32_t>>();
    // `full` reports log-probs, `thin` only samples: the same tokens.
    Sampler full(params), thin(params);
    full.SetPrompt(prompt);
    thin.SetPrompt(prompt);
    const nlohmann::json& steps = c.at("steps");
    for (size_t s = 0; s < steps.size(); ++s) {
      SCOPED_TRACE(::testing::Message() << "step " << s);
      const std::vector<float>& logits = rows[rows.size() == 1 ? 0 : s];
      const nlohmann::json& want = steps[s];
      const SampleResult got = full.SampleWithLogprobs(logits.data(), vocab);
      ASSERT_EQ(got.token, want.at("token").get<int32_t>());
      ASSERT_EQ(thin.Sample(logits.data(), vocab), got.token);
      ExpectLogprobNear(got.logprob, LogprobFromJson(want.at("logprob")), tolerance);
      const nlohmann::json& top = want.at("top");
      ASSERT_EQ(got.top.size(), top.size());
      for (size_t i = 0; i < top.size(); ++i) {
        EXPECT_EQ(got.top[i].token, top[i][0].get<int32_t>()) << "top " << i;
        ExpectLogprobNear(got.top[i].logprob, LogprobFromJson(top[i][1]), tolerance);
      }
      full.Accept(got.token);
      thin.Accept(got.token);
      ++steps_checked;
    }
  }
  EXPECT_GE(steps_checked, 150);
}

// ---- Penalties, by hand -------------------------------------------------------

TEST(SamplerTest, RepetitionPenaltyFlipsAGreedyChoice) {
  SamplingParams p = Greedy();
  p.repetition_penalty = 1.2f;
  {
    // 2.0 / 1.2 = 1.67 < 1.9.
    const float logits[] = {2.0f, 1.9f};
    Sampler sampler(p);
    EXPECT_EQ(sampler.Sample(logits, 2), 0);
    const int32_t prompt[] = {0};
    sampler.SetPrompt(prompt);
    EXPECT_EQ(sampler.Sample(logits, 2), 1);
    sampler.SetPrompt({});  // replaces the prompt
    EXPECT_EQ(sampler.Sample(logits, 2), 0);
  }
  {
    // Negative logits are multiplied: -1.0 * 1.2 = -1.2 < -1.1. Output counts too.
    const float logits[] = {-1.0f, -1.1f};
    Sampler sampler(p);
    EXPECT_EQ(sampler.Sample(logits, 2), 0);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits, 2), 1);
  }
  {
    // Applied once per token, however often it occurs: 2.0 / 1.2 = 1.67 > 1.6
    // (twice would be 1.39).
    const float logits[] = {2.0f, 1.6f};
    Sampler sampler(p);
    const int32_t prompt[] = {0, 0, 0};
    sampler.SetPrompt(prompt);
    sampler.Accept(0);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits, 2), 0);
  }
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountTheOutputOnly) {
  const float logits[] = {1.0f, 0.9f, 0.5f};
  SamplingParams presence = Greedy();
  presence.presence_penalty = 0.2f;
  {
    Sampler sampler(presence);
    const int32_t prompt[] = {0, 0, 0};
    sampler.SetPrompt(prompt);  // the prompt does not count
    EXPECT_EQ(sampler.Sample(logits, 3), 0);
    sampler.Accept(0);  // 1.0 - 0.2 = 0.8 < 0.9
    EXPECT_EQ(sampler.Sample(logits, 3), 1);
    sampler.Accept(1);  // 0.8 vs 0.7: once each
    sampler.Accept(1);
    EXPECT_EQ(sampler.Sample(logits, 3), 0);
  }
  SamplingParams frequency = Greedy();
  frequency.frequency_penalty = 0.06f;
  {
    Sampler sampler(frequency);
    sampler.Accept(0);  // 1.0 - 0.06 = 0.94 > 0.9
    EXPECT_EQ(sampler.Sample(logits, 3), 0);
    sampler.Accept(0);  // 1.0 - 0.12 = 0.88 < 0.9
    EXPECT_EQ(sampler.Sample(logits, 3), 1);
  }
  // Negative penalties encourage repeats: 0.5 + 0.3 + 2 * 0.2 = 1.2 > 1.0.
  SamplingParams both = Greedy();
  both.presence_penalty = -0.3f;
  both.frequency_penalty = -0.2f;
  {
    Sampler sampler(both);
    sampler.Accept(2);
    sampler.Accept(2);
    EXPECT_EQ(sampler.Sample(logits, 3), 2);
  }
}

TEST(SamplerTest, PenaltiesIgnoreIdsOutsideTheVocabulary) {
  SamplingParams p = Greedy();
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  Sampler sampler(p);
  const int32_t prompt[] = {-5, 7, 1 << 30};
  sampler.SetPrompt(prompt);
  sampler.Accept(-1);
  sampler.Accept(3);
  const float logits[] = {0.0f, 2.0f, 1.0f};
  EXPECT_EQ(sampler.Sample(logits, 3), 1);
}

// Only the counts matter, not the order tokens were accepted in (nor the hash
// map's iteration order).
TEST(SamplerTest, HistoryOrderDoesNotMatter) {
  SamplingParams p = Temperature(0.8f, 5);
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.3f;
  p.top_p = 0.9f;
  p.logprobs = 5;
  p.logprobs_mode = LogprobsMode::kProcessed;
  std::vector<int32_t> history;
  for (int i = 0; i < 300; ++i) history.push_back((i * 37) % 101);
  std::vector<int32_t> reversed(history.rbegin(), history.rend());
  Sampler a(p), b(p);
  for (int32_t t : history) a.Accept(t);
  for (int32_t t : reversed) b.Accept(t);
  const std::vector<float> logits = RandomLogits(500, 2.0f, 3);
  for (int k = 0; k < 50; ++k) {
    const SampleResult ra = a.SampleWithLogprobs(logits.data(), 500);
    const SampleResult rb = b.SampleWithLogprobs(logits.data(), 500);
    ASSERT_EQ(ra.token, rb.token);
    ASSERT_EQ(ra.logprob, rb.logprob);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(ra.top[i].token, rb.top[i].token);
  }
}

// ---- Truncation -------------------------------------------------------------

TEST(SamplerTest, TopKOfOneIsGreedy) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = RandomLogits(1000, 2.0f, seed);
    SamplingParams p = Temperature(5.0f, seed);
    p.top_k = 1;
    Sampler sampler(p);
    for (int k = 0; k < 10; ++k) ASSERT_EQ(sampler.Sample(logits.data(), 1000), Argmax(logits.data(), 1000));
  }
}

TEST(SamplerTest, TopKKeepsTiesWithTheKthLogit) {
  const float logits[] = {1.0f, 1.0f, 1.0f, 0.9f};
  SamplingParams p = Temperature(1.0f, 3);
  p.top_k = 1;
  Sampler sampler(p);
  std::set<int32_t> seen;
  for (int k = 0; k < 300; ++k) seen.insert(sampler.Sample(logits, 4));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2}));
}

TEST(SamplerTest, TopK5NeverLeavesTheTop5) {
  const int vocab = 1000;
  const std::vector<float> logits = RandomLogits(vocab, 1.0f, 11);
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + 5, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const std::set<int32_t> top5(ids.begin(), ids.begin() + 5);
  SamplingParams p = Temperature(2.0f, 99);  // flat: 98 % of the mass is outside the top 5
  p.top_k = 5;
  Sampler sampler(p);
  std::map<int32_t, int> counts;
  for (int k = 0; k < 10000; ++k) {
    const int32_t t = sampler.Sample(logits.data(), vocab);
    ASSERT_TRUE(top5.count(t)) << "draw " << k << " gave " << t;
    ++counts[t];
  }
  EXPECT_EQ(counts.size(), 5u);
}

TEST(SamplerTest, TinyTopPIsGreedy) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = RandomLogits(1000, 2.0f, seed);
    SamplingParams p = Temperature(3.0f, seed);
    p.top_p = 1e-6f;
    Sampler sampler(p);
    for (int k = 0; k < 10; ++k) ASSERT_EQ(sampler.Sample(logits.data(), 1000), Argmax(logits.data(), 1000));
  }
}

TEST(SamplerTest, TopPKeepsTheSmallestPrefixReachingP) {
  // Probabilities 0.2, 0.5, 0.3 by id: in logit order 1 (0.5), 2 (0.3), 0 (0.2).
  const std::vector<float> logits = Log({0.2, 0.5, 0.3});
  SamplingParams p = Temperature(1.0f, 8);
  p.logprobs = 3;
  p.logprobs_mode = LogprobsMode::kProcessed;
  p.top_p = 0.7f;  // mass before: 0, 0.5 (< 0.7, kept), 0.8 (cut)
  Sampler sampler(p);
  const SampleResult r = sampler.SampleWithLogprobs(logits.data(), 3);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, 1);
  EXPECT_NEAR(r.top[0].logprob, std::log(0.5 / 0.8), 1e-6);
  EXPECT_EQ(r.top[1].token, 2);
  EXPECT_NEAR(r.top[1].logprob, std::log(0.3 / 0.8), 1e-6);
  EXPECT_EQ(r.top[2].token, 0);
  EXPECT_EQ(r.top[2].logprob, kNegInf);
  // 0.45: the first token alone reaches it.
  p.top_p = 0.45f;
  Sampler one(p);
  for (int k = 0; k < 100; ++k) ASSERT_EQ(one.Sample(logits.data(), 3), 1);
}

TEST(SamplerTest, TopPBreaksTiesByLowestId) {
  const float logits[] = {1.0f, 1.0f, 1.0f, 1.0f};
  SamplingParams p = Temperature(1.0f, 4);
  p.top_p = 0.5f;  // 0 (before 0) and 1 (0.25) kept; 2 has 0.5 before it
  Sampler sampler(p);
  std::set<int32_t> seen;
  for (int k = 0; k < 300; ++k) seen.insert(sampler.Sample(logits, 4));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
}

// A production-sized vocabulary, where top_p sorts its prefix in rounds: every
// draw is in the set a full sort keeps.
TEST(SamplerTest, TopPOnALargeVocabularyMatchesAFullSort) {
  const int vocab = 151936;
  const std::vector<float> logits = RandomLogits(vocab, 2.0f, 21);
  const double temperature = 0.8, top_p = 0.9;
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float max = logits[ids[0]];
  std::vector<double> w(vocab);
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) total += w[i] = std::exp((logits[i] - max) / temperature);
  std::set<int32_t> kept;
  double before = 0.0;
  for (int32_t id : ids) {
    if (!kept.empty() && before >= top_p * total) break;
    kept.insert(id);
    before += w[id];
  }
  ASSERT_GT(kept.size(), 1000u);  // several rounds of the prefix sort
  SamplingParams p = Temperature(static_cast<float>(temperature), 77);
  p.top_p = static_cast<float>(top_p);
  p.logprobs = 20;
  p.logprobs_mode = LogprobsMode::kProcessed;
  Sampler sampler(p);
  for (int k = 0; k < 30; ++k) {
    const SampleResult r = sampler.SampleWithLogprobs(logits.data(), vocab);
    ASSERT_TRUE(kept.count(r.token)) << r.token;
    ASSERT_TRUE(std::isfinite(r.logprob));
    for (int i = 0; i < 20; ++i) ASSERT_EQ(r.top[i].token, ids[i]);
  }
}

// top_k then top_p by the definition (a full sort, the same float weights as
// the sampler), on random cases with and without ties: the kept set's mass,
// seen through the processed log-prob of the most likely token (-log of it),
// and every draw inside the set.
TEST(SamplerTest, TopPMatchesAFullSortOnRandomCases) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = std::vector<int>{2, 20, 65, 200, 1000, 5000}[trial % 6];
    std::vector<float> logits = RandomLogits(vocab, 2.0f, 1000 + trial);
    if (trial % 3 == 0) {
      for (float& l : logits) l = std::round(l * 2.0f) / 2.0f;  // many ties
    }
    SamplingParams p = Temperature(std::uniform_real_distribution<float>(0.3f, 2.0f)(rng), trial);
    p.top_p = std::uniform_real_distribution<float>(0.01f, 1.0f)(rng);
    p.top_k = trial % 4 == 1 ? std::uniform_int_distribution<int>(1, vocab)(rng) : 0;
    p.logprobs = 1;
    p.logprobs_mode = LogprobsMode::kProcessed;
    SCOPED_TRACE(::testing::Message() << "trial " << trial << " vocab " << vocab << " T "
                                      << p.temperature << " top_p " << p.top_p << " top_k " << p.top_k);
    const float max = *std::max_element(logits.begin(), logits.end());
    const double inv_t = 1.0 / p.temperature;
    std::vector<int32_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    const float kth = p.top_k > 0 ? logits[ids[p.top_k - 1]] : -INFINITY;
    double total = 0.0;
    for (int32_t id : ids) {
      if (logits[id] >= kth) total += std::exp((logits[id] - max) * inv_t);
    }
    std::set<int32_t> kept;
    double before = 0.0, z = 0.0;
    for (int32_t id : ids) {
      const double w = std::exp((logits[id] - max) * inv_t);
      if (logits[id] < kth || w == 0.0) continue;
      if (!kept.empty() && before >= p.top_p * total) break;
      kept.insert(id);
      before += w;
      z += std::exp((double(logits[id]) - max) * inv_t);
    }
    Sampler sampler(p);
    for (int k = 0; k < 5; ++k) {
      const SampleResult r = sampler.SampleWithLogprobs(logits.data(), vocab);
      ASSERT_TRUE(kept.count(r.token)) << r.token;
      ASSERT_EQ(r.top[0].token, ids[0]);
      ASSERT_NEAR(r.top[0].logprob, -std::log(z), 1e-12);
    }
  }
}

TEST(SamplerTest, MinPFiltersRelativeToTheMostLikely) {
  // Probabilities 0.5, 0.3, 0.15, 0.05; min_p 0.5 keeps p >= 0.25: ids 0 and 1.
  const std::vector<float> logits = Log({0.5, 0.3, 0.15, 0.05});
  SamplingParams p = Temperature(1.0f, 9);
  p.min_p = 0.5f;
  Sampler sampler(p);
  std::map<int32_t, int> counts;
  const int draws = 20000;
  for (int k = 0; k < draws; ++k) ++counts[sampler.Sample(logits.data(), 4)];
  EXPECT_EQ(counts.size(), 2u);
  const double p0 = 0.5 / 0.8;
  EXPECT_NEAR(counts[0] / double(draws), p0, 5 * std::sqrt(p0 * (1 - p0) / draws));
  // At temperature 2 the ratios are square roots: 0.15 / 0.5 -> 0.55 >= 0.5.
  p.temperature = 2.0f;
  Sampler warm(p);
  std::set<int32_t> seen;
  for (int k = 0; k < 2000; ++k) seen.insert(warm.Sample(logits.data(), 4));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2}));
}

TEST(SamplerTest, GreedyIgnoresTruncation) {
  const std::vector<float> logits = RandomLogits(300, 2.0f, 5);
  SamplingParams p = Greedy();
  p.top_k = 3;
  p.top_p = 0.1f;
  p.min_p = 0.9f;
  Sampler sampler(p);
  EXPECT_EQ(sampler.Sample(logits.data(), 300), Argmax(logits.data(), 300));
}

// ---- Log-probs ----------------------------------------------------------------

TEST(SamplerTest, LogprobsAreNormalisedAndSorted) {
  const int vocab = 16;
  std::vector<float> logits = RandomLogits(vocab, 2.0f, 17);
  logits[3] = logits[9] = logits[12] = 0.25f;  // ties: listed by id
  for (LogprobsMode mode : {LogprobsMode::kRaw, LogprobsMode::kProcessed}) {
    for (float t : {0.0f, 0.6f, 1.7f}) {
      SamplingParams p = Temperature(t, 31);
      p.logprobs = vocab;
      p.logprobs_mode = mode;
      p.repetition_penalty = 1.4f;
      p.frequency_penalty = 0.5f;
      p.top_p = 0.95f;
      Sampler sampler(p);
      const int32_t prompt[] = {1, 2, 3};
      sampler.SetPrompt(prompt);
      for (int step = 0; step < 5; ++step) {
        SCOPED_TRACE(::testing::Message() << "mode " << int(mode) << " T " << t << " step " << step);
        const SampleResult r = sampler.SampleWithLogprobs(logits.data(), vocab);
        ASSERT_EQ(static_cast<int>(r.top.size()), vocab);
        double sum = 0.0;
        std::set<int32_t> ids;
        for (size_t i = 0; i < r.top.size(); ++i) {
          sum += std::exp(r.top[i].logprob);
          ids.insert(r.top[i].token);
          if (r.top[i].token == r.token) {
            EXPECT_EQ(r.top[i].logprob, r.logprob);
          }
          if (i == 0) continue;
          const TokenLogprob& a = r.top[i - 1];
          const TokenLogprob& b = r.top[i];
          EXPECT_TRUE(a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token))
              << i << ": " << a.token << " " << a.logprob << ", " << b.token << " " << b.logprob;
        }
        EXPECT_EQ(ids.size(), static_cast<size_t>(vocab));
        EXPECT_NEAR(sum, 1.0, 1e-9);
        EXPECT_TRUE(std::isfinite(r.logprob));
        if (mode == LogprobsMode::kRaw) {
          double z = 0.0;
          for (float l : logits) z += std::exp(double(l));
          EXPECT_NEAR(r.logprob, logits[r.token] - std::log(z), 1e-12);
        }
        sampler.Accept(r.token);
      }
    }
  }
}

TEST(SamplerTest, LogprobsNeverChangeTheDraws) {
  const std::vector<float> logits = RandomLogits(200, 1.5f, 8);
  SamplingParams p = Temperature(0.9f, 2024);
  p.top_k = 40;
  p.min_p = 0.01f;
  p.presence_penalty = 0.5f;
  SamplingParams q = p;
  q.logprobs = 20;
  q.logprobs_mode = LogprobsMode::kProcessed;
  Sampler a(p), b(q);
  for (int k = 0; k < 200; ++k) {
    const int32_t t = a.Sample(logits.data(), 200);
    const SampleResult r = b.SampleWithLogprobs(logits.data(), 200);
    ASSERT_EQ(r.token, t);
    ASSERT_EQ(r.top.size(), 20u);
    a.Accept(t);
    b.Accept(t);
  }
  // More alternatives than the vocabulary: all of it.
  SamplingParams small = Greedy();
  small.logprobs = 20;
  const float three[] = {0.0f, 1.0f, 2.0f};
  EXPECT_EQ(Sampler(small).SampleWithLogprobs(three, 3).top.size(), 3u);
}

// ---- Determinism --------------------------------------------------------------

TEST(SamplerTest, SameSeedSameSequenceInterleavedWithOtherRequests) {
  SamplingParams p = Temperature(1.1f, 0xDEADBEEFCAFEull);
  p.top_k = 50;
  p.top_p = 0.92f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.2f;
  p.frequency_penalty = 0.1f;
  const int vocab = 3000;
  std::vector<std::vector<float>> rows;
  for (uint32_t s = 0; s < 64; ++s) rows.push_back(RandomLogits(vocab, 2.0f, 100 + s));
  const int32_t prompt[] = {5, 17, 17, 2999};
  auto run = [&](bool interleave) {
    Sampler sampler(p);
    sampler.SetPrompt(prompt);
    Sampler other(Temperature(1.0f, 0xDEADBEEFCAFEull));  // another request, same seed
    std::vector<int32_t> out;
    for (const auto& row : rows) {
      if (interleave) other.Accept(other.Sample(row.data(), vocab));
      out.push_back(sampler.Sample(row.data(), vocab));
      sampler.Accept(out.back());
      if (interleave) other.Sample(rows[0].data(), vocab);
    }
    return out;
  };
  const std::vector<int32_t> alone = run(false);
  EXPECT_EQ(run(true), alone);
  EXPECT_GT(std::set<int32_t>(alone.begin(), alone.end()).size(), 20u);
  p.seed += 1;
  EXPECT_NE(run(false), alone);
}

// ---- CheckSamplingParams ------------------------------------------------------

TEST(CheckSamplingParamsTest, AcceptsDefaultsAndBoundaries) {
  EXPECT_TRUE(CheckSamplingParams({}).ok());
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 1.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.logprobs = kMaxLogprobs;
  EXPECT_TRUE(CheckSamplingParams(p).ok()) << CheckSamplingParams(p);
  p.temperature = 1e-30f;
  p.top_k = 1;
  p.top_p = 1e-30f;
  p.min_p = 0.0f;
  p.repetition_penalty = 1e-30f;
  p.presence_penalty = 2.0f;
  p.frequency_penalty = -2.0f;
  p.logprobs = 0;
  p.logprobs_mode = LogprobsMode::kProcessed;
  EXPECT_TRUE(CheckSamplingParams(p).ok()) << CheckSamplingParams(p);
}

TEST(CheckSamplingParamsTest, NamesTheFieldAndTheValue) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    void (*set)(SamplingParams&, float);
    float value;
    const char* message;
  };
  const Case cases[] = {
      {[](SamplingParams& p, float v) { p.temperature = v; }, -0.5f,
       "temperature must be a finite number >= 0, got -0.5"},
      {[](SamplingParams& p, float v) { p.temperature = v; }, nan, "temperature must be a finite number >= 0, got nan"},
      {[](SamplingParams& p, float v) { p.temperature = v; }, inf, "temperature must be a finite number >= 0, got inf"},
      {[](SamplingParams& p, float v) { p.top_k = int32_t(v); }, -1, "top_k must be >= 0 (0 turns it off), got -1"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, 0.0f, "top_p must be in (0, 1], got 0"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, 1.5f, "top_p must be in (0, 1], got 1.5"},
      {[](SamplingParams& p, float v) { p.top_p = v; }, nan, "top_p must be in (0, 1], got nan"},
      {[](SamplingParams& p, float v) { p.min_p = v; }, -0.25f, "min_p must be in [0, 1], got -0.25"},
      {[](SamplingParams& p, float v) { p.min_p = v; }, 1.25f, "min_p must be in [0, 1], got 1.25"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, 0.0f,
       "repetition_penalty must be a finite number > 0, got 0"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, -1.0f,
       "repetition_penalty must be a finite number > 0, got -1"},
      {[](SamplingParams& p, float v) { p.repetition_penalty = v; }, inf,
       "repetition_penalty must be a finite number > 0, got inf"},
      {[](SamplingParams& p, float v) { p.presence_penalty = v; }, 2.5f, "presence_penalty must be in [-2, 2], got 2.5"},
      {[](SamplingParams& p, float v) { p.presence_penalty = v; }, nan, "presence_penalty must be in [-2, 2], got nan"},
      {[](SamplingParams& p, float v) { p.frequency_penalty = v; }, -3.0f,
       "frequency_penalty must be in [-2, 2], got -3"},
      {[](SamplingParams& p, float v) { p.logprobs = int32_t(v); }, 21, "logprobs must be in [0, 20], got 21"},
      {[](SamplingParams& p, float v) { p.logprobs = int32_t(v); }, -1, "logprobs must be in [0, 20], got -1"},
      {[](SamplingParams& p, float v) { p.logprobs_mode = static_cast<LogprobsMode>(int(v)); }, 7,
       "logprobs_mode must be kRaw or kProcessed, got 7"},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.set(p, c.value);
    const absl::Status s = CheckSamplingParams(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(s.message(), c.message);
  }
}

}  // namespace
}  // namespace moeserve
