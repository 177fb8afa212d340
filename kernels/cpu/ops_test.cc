// The small CPU kernels against plain formulas on seeded data.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/router.h"

namespace moeserve::kernels::cpu {
namespace {

std::vector<float> Random(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(RmsNormTest, MatchesFormulaInPlace) {
  std::mt19937 rng(1);
  for (int dim : {1, 19, 111}) {
    auto x = Random(3 * dim, rng), w = Random(dim, rng);
    auto out = x;
    RmsNorm(out.data(), 3, dim, w.data(), 1e-6f, out.data());
    for (int r = 0; r < 3; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double scale = 1.0 / std::sqrt(ss / dim + 1e-6);
      for (int i = 0; i < dim; ++i) {
        EXPECT_NEAR(out[r * dim + i], x[r * dim + i] * scale * w[i], 1e-5);
      }
    }
  }
}

TEST(RopeTest, RotatesHalvesByPositionAngle) {
  std::mt19937 rng(2);
  const int d = 8, heads = 3;
  const int32_t positions[] = {0, 5, 1000};
  auto x = Random(3 * heads * d, rng);
  auto y = x;
  RopeTable(d, 10000.0).Apply(y.data(), 3, heads, positions);
  for (int t = 0; t < 3; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* a = &x[(t * heads + h) * d];
      const float* b = &y[(t * heads + h) * d];
      for (int i = 0; i < d / 2; ++i) {
        const double angle = positions[t] * std::pow(10000.0, -2.0 * i / d);
        EXPECT_NEAR(b[i], a[i] * std::cos(angle) - a[i + d / 2] * std::sin(angle), 1e-5);
        EXPECT_NEAR(b[i + d / 2], a[i + d / 2] * std::cos(angle) + a[i] * std::sin(angle), 1e-5);
      }
    }
  }
  // Position 0 is the identity.
  for (int i = 0; i < heads * d; ++i) EXPECT_EQ(y[i], x[i]);
}

TEST(ActivationTest, SiluMul) {
  const float g[] = {-3.0f, 0.0f, 2.5f}, u[] = {2.0f, 5.0f, -1.0f};
  float out[3];
  SiluMul(g, u, 3, out);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
}

TEST(RouterTest, SoftmaxTopKAndRenormalisation) {
  const float logits[] = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f};
  int32_t ids[2];
  float w[2];
  RouteTopK(logits, 1, 5, 2, /*renormalize=*/false, ids, w);
  // Equal logits: the lower index first.
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  double denom = 0;
  for (float l : logits) denom += std::exp(l);
  EXPECT_NEAR(w[0], std::exp(2.0) / denom, 1e-6);
  RouteTopK(logits, 1, 5, 2, /*renormalize=*/true, ids, w);
  EXPECT_NEAR(w[0], 0.5, 1e-6);
  EXPECT_NEAR(w[1], 0.5, 1e-6);
}

// Attention over a contiguous cache computed the plain way.
std::vector<float> NaiveAttention(const AttentionShape& s, const std::vector<float>& q,
                                  const std::vector<int32_t>& pos, const std::vector<float>& k,
                                  const std::vector<float>& v) {
  const int d = s.head_dim, kv_dim = s.num_kv_heads * d;
  std::vector<float> out(q.size());
  for (size_t i = 0; i < pos.size(); ++i) {
    for (int h = 0; h < s.num_heads; ++h) {
      const int kvh = h / (s.num_heads / s.num_kv_heads);
      std::vector<double> sc;
      const int lo = s.window > 0 ? std::max(0, pos[i] - s.window + 1) : 0;
      for (int j = lo; j <= pos[i]; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c) dot += q[(i * s.num_heads + h) * d + c] * k[j * kv_dim + kvh * d + c];
        sc.push_back(dot / std::sqrt(double(d)));
      }
      double mx = -1e300, sum = 0;
      for (double x : sc) mx = std::max(mx, x);
      for (double& x : sc) sum += (x = std::exp(x - mx));
      for (int c = 0; c < d; ++c) {
        double acc = 0;
        for (int j = lo; j <= pos[i]; ++j) acc += sc[j - lo] / sum * v[j * kv_dim + kvh * d + c];
        out[(i * s.num_heads + h) * d + c] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

TEST(AttentionTest, PagedMatchesContiguousWithGqaAndWindow) {
  std::mt19937 rng(5);
  for (int window : {0, 4}) {
    AttentionShape s{6, 2, 10, window};
    const int tokens = 19, kv_dim = s.num_kv_heads * s.head_dim, block = 4;
    auto k = Random(tokens * kv_dim, rng), v = Random(tokens * kv_dim, rng);
    std::vector<int32_t> pos = {0, 3, 4, 11, 18};
    auto q = Random(pos.size() * s.num_heads * s.head_dim, rng);
    const auto want = NaiveAttention(s, q, pos, k, v);

    // Scatter the contiguous cache into shuffled blocks of a larger pool.
    const int blocks = (tokens + block - 1) / block;
    std::vector<int32_t> table = {7, 2, 5, 0, 3};
    std::vector<float> kp(8 * block * kv_dim, NAN), vp(8 * block * kv_dim, NAN);
    for (int j = 0; j < tokens; ++j) {
      const int row = table[j / block] * block + j % block;
      std::copy_n(&k[j * kv_dim], kv_dim, &kp[row * kv_dim]);
      std::copy_n(&v[j * kv_dim], kv_dim, &vp[row * kv_dim]);
    }
    ASSERT_EQ(blocks, static_cast<int>(table.size()));
    std::vector<float> got(q.size());
    PagedAttention(s, q.data(), pos.size(), pos.data(), {kp.data(), vp.data(), table.data(), block},
                   got.data());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;

    const int32_t one_block[] = {0};
    PagedAttention(s, q.data(), pos.size(), pos.data(), {k.data(), v.data(), one_block, tokens},
                   got.data());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
  }
}

}  // namespace
}  // namespace moeserve::kernels::cpu
