// Linear and the GEMV versions against a double-precision reference on
// seeded data of awkward sizes (1, 19, 111, 989 columns; odd row counts).
#include "kernels/cpu/linear.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

struct Matrix {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint16_t> half;  // BF16/F16 storage
  std::vector<float> full;     // F32 storage
  std::vector<double> exact;   // the stored values, as double

  Weight weight() const {
    return {dtype, dtype == DType::kF32 ? static_cast<const void*>(full.data()) : half.data(),
            rows, cols};
  }
};

Matrix RandomMatrix(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Matrix m{dtype, rows, cols, {}, {}, {}};
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) {
      m.full.push_back(v);
      m.exact.push_back(v);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? FloatToBF16(v) : FloatToF16(v);
      m.half.push_back(h);
      m.exact.push_back(dtype == DType::kBF16 ? BF16ToFloat(h) : F16ToFloat(h));
    }
  }
  return m;
}

std::vector<float> RandomVector(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Float accumulation of `cols` products of unit-variance values: expect an
// error around sqrt(cols) * 2^-24 * |terms|; 1e-5 * sqrt(cols) * 4 is ample
// and still catches any wrong element (errors of order 1).
double Tolerance(int64_t cols) { return 4e-5 * std::sqrt(static_cast<double>(cols)); }

TEST(LinearTest, MatchesDoubleReferenceForEveryDtypeAndBatch) {
  std::mt19937 rng(7);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t cols : {1, 19, 111, 989}) {
      for (int64_t rows : {1, 7, 33, 300}) {
        for (int64_t n : {1, 3, 4, 5, 9, 16, 17}) {
          Matrix w = RandomMatrix(dtype, rows, cols, rng);
          std::vector<float> x = RandomVector(n * cols, rng);
          std::vector<float> bias = RandomVector(rows, rng);
          std::vector<float> y(n * rows, NAN);
          Linear(x.data(), n, w.weight(), bias.data(), y.data());
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              double ref = bias[r];
              for (int64_t c = 0; c < cols; ++c) ref += w.exact[r * cols + c] * x[t * cols + c];
              ASSERT_NEAR(y[t * rows + r], ref, Tolerance(cols))
                  << DTypeName(dtype) << " rows=" << rows << " cols=" << cols << " n=" << n
                  << " t=" << t << " r=" << r;
            }
          }
        }
      }
    }
  }
}

// Up to kLowPrecisionGemvMaxTokens rows of BF16/F16 weights (and up to
// kGemvMaxTokens of F32), each output row has the bits it would have alone:
// the expert-parallel engine batches one expert's rows from several ranks and
// relies on this to reproduce the single-process results exactly.
TEST(LinearTest, SmallBatchesGiveEachRowItsOwnBits) {
  std::mt19937 rng(11);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    const int64_t max_n = dtype == DType::kF32 ? kGemvMaxTokens : kLowPrecisionGemvMaxTokens;
    const int64_t rows = 70, cols = 333;
    Matrix w = RandomMatrix(dtype, rows, cols, rng);
    for (int64_t n = 1; n <= max_n; ++n) {
      std::vector<float> x = RandomVector(n * cols, rng);
      std::vector<float> y(n * rows);
      Linear(x.data(), n, w.weight(), nullptr, y.data());
      for (int64_t t = 0; t < n; ++t) {
        std::vector<float> alone(rows);
        Linear(&x[t * cols], 1, w.weight(), nullptr, alone.data());
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_EQ(y[t * rows + r], alone[r]) << DTypeName(dtype) << " n=" << n << " t=" << t;
        }
      }
    }
  }
}

TEST(GemvTest, EverySupportedIsaAgreesWithGeneric) {
  std::mt19937 rng(11);
  const Isa best = DetectIsa();
  std::vector<Isa> isas = {Isa::kGeneric};
  if (best == Isa::kAvx2 || best == Isa::kAvx512) isas.push_back(Isa::kAvx2);
  if (best == Isa::kAvx512) isas.push_back(Isa::kAvx512);
  if (isas.size() == 1) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t cols : {1, 15, 16, 17, 31, 33, 989}) {
      for (int n = 1; n <= kGemvMaxTokens; ++n) {
        const int64_t rows = 13;
        Matrix w = RandomMatrix(dtype, rows, cols, rng);
        std::vector<float> x = RandomVector(n * cols, rng);
        std::vector<float> ref(n * rows), got(n * rows);
        GemvArgs a{x.data(), n, w.weight().data, dtype, cols, 0, rows, ref.data(), rows};
        GemvGeneric(a);
        for (Isa isa : isas) {
          a.y = got.data();
          // Only a middle slice: the row range must be honoured.
          std::fill(got.begin(), got.end(), NAN);
          a.row_begin = 2;
          a.row_end = 11;
          Gemv(isa, a);
          for (int t = 0; t < n; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const float g = got[t * rows + r];
              if (r < 2 || r >= 11) {
                EXPECT_TRUE(std::isnan(g)) << "row outside the range was written";
              } else {
                EXPECT_NEAR(g, ref[t * rows + r], Tolerance(cols))
                    << IsaName(isa) << " cols=" << cols << " n=" << n;
              }
            }
          }
        }
      }
    }
  }
}

TEST(LinearTest, GatherRowsConvertsEmbeddingRows) {
  std::mt19937 rng(3);
  Matrix table = RandomMatrix(DType::kBF16, 10, 6, rng);
  const int32_t ids[] = {9, 0, 9, 4};
  std::vector<float> out(4 * 6);
  GatherRows(table.weight(), ids, 4, out.data());
  for (int i = 0; i < 4; ++i) {
    for (int c = 0; c < 6; ++c) EXPECT_EQ(out[i * 6 + c], table.exact[ids[i] * 6 + c]);
  }
}

TEST(LinearTest, ThreadCountIsApplied) {
  SetNumThreads(1);
  EXPECT_EQ(NumThreads(), 1);
  SetNumThreads(0);
  EXPECT_GE(NumThreads(), 1);
}

}  // namespace
}  // namespace moeserve::kernels::cpu
