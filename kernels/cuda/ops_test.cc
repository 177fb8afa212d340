// The small CUDA kernels of ops.h against their CPU references, on seeded
// random data of awkward sizes, through both the vectorized (16-byte) and the
// scalar paths (shapes that are not multiples of the vector width, and
// pointers offset by one element). Outputs are poisoned with 0xff bytes (NaN
// as float and bf16, -1 as int) before each kernel, and every element is
// checked to have been written; in-place kernels (AddInPlace, Rope) are
// checked against values that differ from their inputs. Skipped, saying so,
// where no GPU is present; the shape checks run everywhere (the launchers
// reject shapes before any CUDA call).
//
// Tolerances:
// - EmbeddingGather, AddInPlace: exact (bit for bit): bf16 -> float is exact,
//   and a float add is one IEEE operation on both sides.
// - RmsNormToBf16, float output: the CPU's operations (the sum of squares in
//   double, the scale in double rounded to float, two float products), with
//   the double sum in another order; that moves scale by at most one float
//   ulp in rare rows, so 1e-5 * (1 + |v|) as rmsnorm_test is generous
//   (the test prints how many values were not bit-identical: expect ~0).
//   bf16 output: exactly FloatToBF16 of the GPU's own float value, and
//   within one bf16 ulp of FloatToBF16 of the CPU's.
// - Rope: the same double angle; CUDA's double sin/cos are within 2 double
//   ulp of glibc's, so the float cos/sin differ by at most one float ulp
//   (rarely); the float rotation is the CPU's (no FMA). Error <= one ulp of
//   cos/sin times |a| + |b|: 1e-6 * (|a| + |b|) relative to the pair.
// - Argmax: exact, ties (planted) to the lowest index, NaN as the CPU.
// - SampleFromLogits: the same token as a CPU mirror of Sampler::Sample
//   given the same uniform draw (the mirror is itself checked against
//   Sampler), except where u * sum lies within 1e-12 of a cumulative
//   boundary (relative to the sum), where double rounding in a different
//   summation order may decide either way; such cases are counted and
//   should be ~0.
#include "kernels/cuda/ops.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "engine/sample_with_draw_testing.h"
#include "engine/sampler.h"
#include "gtest/gtest.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer_testing.h"

namespace moeserve::cuda {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

std::vector<float> RandomFloats(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Distance in bf16 steps between two non-NaN bf16 values (-0 and +0 equal).
int Bf16Steps(uint16_t a, uint16_t b) {
  auto line = [](uint16_t v) { return (v & 0x8000) ? -int(v & 0x7fff) : int(v); };
  return std::abs(line(a) - line(b));
}

class CudaOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = DeviceCount();
    ASSERT_TRUE(devices.ok()) << devices.status();
    if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernels were built, not run";
  }
};

// ---- EmbeddingGather ---------------------------------------------------------

TEST_F(CudaOpsTest, EmbeddingGatherMatchesGatherRows) {
  std::mt19937 rng(11);
  const int64_t vocab = 1037;
  for (int dim : {1, 19, 64, 1000, 2048}) {
    // offset 1 misaligns the table and the output: the scalar path.
    for (int offset : {0, 1}) {
      for (int64_t n : {1, 7, 300}) {
        SCOPED_TRACE(::testing::Message() << "dim " << dim << " n " << n << " offset " << offset);
        std::vector<uint16_t> table(vocab * dim + offset);
        for (auto& b : table) b = FloatToBF16(std::normal_distribution<float>(0.0f, 1.0f)(rng));
        std::vector<int32_t> ids(n);
        for (auto& id : ids) id = std::uniform_int_distribution<int32_t>(0, vocab - 1)(rng);
        ids[0] = static_cast<int32_t>(vocab - 1);
        // Rows 1..4 get ids outside [0, vocab): rows of zeros.
        const int32_t bad[] = {-1, static_cast<int32_t>(vocab), INT32_MAX, INT32_MIN};
        for (int i = 0; i < 4 && 1 + i < n; ++i) ids[1 + i] = bad[i];
        if (n > 5) ids[5] = 0;

        DeviceBuffer<uint16_t> d_table(table);
        DeviceBuffer<int32_t> d_ids(ids);
        DeviceBuffer<float> d_out(n * dim + offset);
        ASSERT_NE(d_out.get(), nullptr);
        ASSERT_EQ(EmbeddingGather(d_table.get() + offset, vocab, dim, d_ids.get(), n,
                                  d_out.get() + offset, nullptr),
                  cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<float> out = d_out.Read();

        std::vector<float> want(dim);
        for (int64_t i = 0; i < n; ++i) {
          const bool valid = ids[i] >= 0 && ids[i] < vocab;
          if (valid) {
            kernels::cpu::GatherRows(
                kernels::cpu::Weight{DType::kBF16, table.data() + offset, vocab, dim}, &ids[i], 1,
                want.data());
          } else {
            std::fill(want.begin(), want.end(), 0.0f);
          }
          for (int c = 0; c < dim; ++c) {
            const float got = out[offset + i * dim + c];
            ASSERT_FALSE(std::isnan(got)) << "row " << i << " col " << c << " not written";
            ASSERT_EQ(Bits(got), Bits(want[c]))
                << "row " << i << " (id " << ids[i] << ") col " << c << ": " << got << " vs "
                << want[c];
          }
        }
      }
    }
  }
}

// ---- GatherRows --------------------------------------------------------------

// Every row width and alignment path (16-byte, 4-byte, byte), repeated and
// permuted indices; the reference is a memcpy per row.
TEST_F(CudaOpsTest, GatherRowsCopiesTheIndexedRows) {
  std::mt19937 rng(5);
  for (int64_t row_bytes : {1, 3, 4, 12, 16, 4096, 8200}) {
    for (int offset : {0, 4, 1}) {
      for (int64_t n : {0, 1, 9, 257}) {
        SCOPED_TRACE(::testing::Message()
                     << "row_bytes " << row_bytes << " offset " << offset << " n " << n);
        const int64_t src_rows = 37;
        std::vector<uint8_t> src(src_rows * row_bytes + offset);
        for (auto& b : src) b = static_cast<uint8_t>(rng());
        std::vector<int32_t> index(std::max<int64_t>(n, 1));
        for (auto& i : index) i = std::uniform_int_distribution<int32_t>(0, src_rows - 1)(rng);
        DeviceBuffer<uint8_t> d_src(src);
        DeviceBuffer<int32_t> d_index(index);
        DeviceBuffer<uint8_t> d_dst(n * row_bytes + offset);
        ASSERT_NE(d_dst.get(), nullptr);
        ASSERT_EQ(GatherRows(d_src.get() + offset, row_bytes, d_index.get(), n,
                             d_dst.get() + offset, nullptr),
                  cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<uint8_t> dst = d_dst.Read();
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::memcmp(&dst[offset + i * row_bytes],
                                &src[offset + int64_t{index[i]} * row_bytes], row_bytes),
                    0)
              << "row " << i << " (source row " << index[i] << ")";
        }
      }
    }
  }
  EXPECT_EQ(GatherRows(nullptr, 0, nullptr, 1, nullptr, nullptr), cudaErrorInvalidValue);
}

// ---- RmsNormToBf16 -----------------------------------------------------------

TEST_F(CudaOpsTest, RmsNormToBf16MatchesCpuReference) {
  std::mt19937 rng(12);
  const float eps = 1e-6f;
  int64_t not_bit_identical = 0, total = 0;
  for (int dim : {1, 19, 111, 989, 2048, 4096}) {
    // offset 1 misaligns every array: the scalar path.
    for (int offset : {0, 1}) {
      for (int64_t rows : {1, 7, 300}) {
        SCOPED_TRACE(::testing::Message() << "dim " << dim << " rows " << rows << " offset "
                                          << offset);
        std::vector<float> x = RandomFloats(rows * dim + offset, 1.0f, rng);
        // Rows of very different scales: the scale factor is not ~1.
        for (int64_t r = 0; r < rows; ++r) {
          const float s = std::ldexp(1.0f, static_cast<int>(r % 9) * 4 - 16);
          for (int i = 0; i < dim; ++i) x[offset + r * dim + i] *= s;
        }
        std::vector<float> w(dim + offset);
        for (auto& v : w) v = 1.0f + 0.3f * std::normal_distribution<float>(0.0f, 1.0f)(rng);
        std::vector<float> want(rows * dim);
        kernels::cpu::RmsNorm(x.data() + offset, rows, dim, w.data() + offset, eps, want.data());

        DeviceBuffer<float> d_x(x), d_w(w), d_out(rows * dim + offset);
        DeviceBuffer<uint16_t> d_bf16(rows * dim + offset), d_bf16_only(rows * dim + offset);
        ASSERT_NE(d_bf16_only.get(), nullptr);
        ASSERT_EQ(RmsNormToBf16(d_x.get() + offset, rows, dim, d_w.get() + offset, eps,
                                d_out.get() + offset, d_bf16.get() + offset, nullptr),
                  cudaSuccess);
        // Without the float output.
        ASSERT_EQ(RmsNormToBf16(d_x.get() + offset, rows, dim, d_w.get() + offset, eps, nullptr,
                                d_bf16_only.get() + offset, nullptr),
                  cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<float> got = d_out.Read();
        const std::vector<uint16_t> got_bf16 = d_bf16.Read(), got_bf16_only = d_bf16_only.Read();
        for (int64_t i = 0; i < rows * dim; ++i) {
          const float g = got[offset + i];
          ASSERT_FALSE(std::isnan(g)) << "element " << i << " (row " << i / dim << ") not written";
          ASSERT_NEAR(g, want[i], 1e-5f * (1.0f + std::abs(want[i])))
              << "element " << i << " (row " << i / dim << ")";
          not_bit_identical += Bits(g) != Bits(want[i]);
          ++total;
          const uint16_t b = got_bf16[offset + i];
          ASSERT_EQ(b, FloatToBF16(g)) << "bf16 element " << i << " is not bf16(its float)";
          ASSERT_EQ(got_bf16_only[offset + i], b)
              << "bf16 element " << i << " differs without the float output";
          ASSERT_LE(Bf16Steps(b, FloatToBF16(want[i])), 1)
              << "bf16 element " << i << ": " << BF16ToFloat(b) << " vs cpu " << want[i];
        }
      }
    }
  }
  std::printf("RmsNormToBf16: %lld of %lld float outputs not bit-identical to the CPU's\n",
              static_cast<long long>(not_bit_identical), static_cast<long long>(total));
}

TEST_F(CudaOpsTest, RmsNormToBf16InPlace) {
  std::mt19937 rng(13);
  const int dim = 2048;
  const int64_t rows = 5;
  const std::vector<float> x = RandomFloats(rows * dim, 2.0f, rng), w = RandomFloats(dim, 1.0f, rng);
  std::vector<float> want(rows * dim);
  kernels::cpu::RmsNorm(x.data(), rows, dim, w.data(), 1e-5f, want.data());
  DeviceBuffer<float> d_x(x), d_w(w);
  DeviceBuffer<uint16_t> d_bf16(rows * dim);
  ASSERT_EQ(RmsNormToBf16(d_x.get(), rows, dim, d_w.get(), 1e-5f, d_x.get(), d_bf16.get(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> got = d_x.Read();
  const std::vector<uint16_t> got_bf16 = d_bf16.Read();
  for (int64_t i = 0; i < rows * dim; ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::abs(want[i]))) << "element " << i;
    ASSERT_EQ(got_bf16[i], FloatToBF16(got[i])) << "bf16 element " << i;
  }
}

// ---- AddInPlace --------------------------------------------------------------

TEST_F(CudaOpsTest, AddInPlaceIsExact) {
  std::mt19937 rng(14);
  for (int64_t n : {1, 3, 4, 5, 2048 * 7 + 3, 1000003}) {
    // offset 1 misaligns x (and y, when y is x): the scalar path.
    for (int offset : {0, 1}) {
      for (bool same : {false, true}) {  // y == x: x += x
        SCOPED_TRACE(::testing::Message() << "n " << n << " offset " << offset << " y==x " << same);
        const std::vector<float> x = RandomFloats(n + offset, 3.0f, rng);
        // |y| >= 0.5, so that every element of x changes (|x| < ~20).
        std::vector<float> y = RandomFloats(n, 1.0f, rng);
        for (auto& v : y) v = std::copysign(0.5f + std::abs(v), v);
        DeviceBuffer<float> d_x(x), d_y(y);
        float* px = d_x.get() + offset;
        const float* py = same ? px : d_y.get();
        ASSERT_EQ(AddInPlace(px, py, n, nullptr), cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<float> got = d_x.Read();
        for (int64_t i = 0; i < n; ++i) {
          const float a = x[offset + i];
          const float want = a + (same ? a : y[i]);
          ASSERT_EQ(Bits(got[offset + i]), Bits(want))
              << "element " << i << ": " << got[offset + i] << " vs " << want;
        }
        if (offset == 1) {
          ASSERT_EQ(Bits(got[0]), Bits(x[0])) << "the element before x was written";
        }
      }
    }
  }
}

// ---- Rope --------------------------------------------------------------------

TEST_F(CudaOpsTest, RopeMatchesRopeTable) {
  std::mt19937 rng(15);
  int64_t not_bit_identical = 0, total = 0;
  for (double theta : {10000.0, 1000000.0}) {
    for (int head_dim : {2, 64, 96, 128}) {
      const kernels::cpu::RopeTable table(head_dim, theta);
      ASSERT_EQ(table.inv_freq().size(), static_cast<size_t>(head_dim / 2));
      DeviceBuffer<double> d_inv_freq(table.inv_freq());
      for (int heads : {1, 4, 40}) {
        for (int64_t n : {1, 7, 300}) {
          SCOPED_TRACE(::testing::Message() << "theta " << theta << " head_dim " << head_dim
                                            << " heads " << heads << " n " << n);
          std::vector<int32_t> positions(n);
          for (auto& p : positions) p = std::uniform_int_distribution<int32_t>(0, 100000)(rng);
          const int32_t planted[] = {100000, 1, 99999, 65536, 4095};
          for (int i = 0; i < 5 && i < n; ++i) positions[i] = planted[i];
          if (n > 5) positions[5] = 0;
          const std::vector<float> x = RandomFloats(n * heads * head_dim, 1.0f, rng);
          std::vector<float> want = x;
          table.Apply(want.data(), n, heads, positions.data());

          DeviceBuffer<float> d_x(x);
          DeviceBuffer<int32_t> d_pos(positions);
          ASSERT_EQ(Rope(d_x.get(), n, heads, head_dim, d_pos.get(), d_inv_freq.get(), nullptr),
                    cudaSuccess);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          const std::vector<float> got = d_x.Read();
          const int half = head_dim / 2;
          for (int64_t t = 0; t < n; ++t) {
            for (int h = 0; h < heads; ++h) {
              const int64_t base = (t * heads + h) * head_dim;
              for (int i = 0; i < half; ++i) {
                const float pair = std::abs(x[base + i]) + std::abs(x[base + i + half]);
                for (int64_t e : {base + i, base + i + half}) {
                  ASSERT_NEAR(got[e], want[e], 1e-6f * pair + 1e-30f)
                      << "token " << t << " (position " << positions[t] << ") head " << h
                      << " element " << e - base;
                  not_bit_identical += Bits(got[e]) != Bits(want[e]);
                  ++total;
                }
              }
            }
          }
        }
      }
    }
  }
  std::printf("Rope: %lld of %lld outputs not bit-identical to the CPU's\n",
              static_cast<long long>(not_bit_identical), static_cast<long long>(total));
}

// ---- Argmax ------------------------------------------------------------------

// Rows of `vocab` logits with planted ties, by row % 6.
std::vector<float> ArgmaxRows(int64_t rows, int vocab, std::mt19937& rng) {
  std::vector<float> l = RandomFloats(rows * vocab, 2.0f, rng);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = l.data() + r * vocab;
    switch (r % 6) {
      case 0:  // the maximum at three random places
        for (int j = 0; j < 3; ++j) row[pick(rng)] = 50.0f;
        break;
      case 1:  // every value equal: index 0
        std::fill(row, row + vocab, -1.5f);
        break;
      case 2:  // the maximum at the last index and one far before it
        row[vocab - 1] = 40.0f;
        row[vocab / 3] = 40.0f;
        break;
      case 3:  // -0.0 and +0.0 tie as the maximum
        for (int i = 0; i < vocab; ++i) row[i] = -std::abs(row[i]) - 1.0f;
        row[vocab - 1] = 0.0f;
        row[(vocab * 2) / 3] = -0.0f;
        break;
      case 4:  // -inf everywhere but one place, and ties at +inf
        std::fill(row, row + vocab, -std::numeric_limits<float>::infinity());
        row[pick(rng)] = std::numeric_limits<float>::infinity();
        row[pick(rng)] = std::numeric_limits<float>::infinity();
        break;
      default:  // random
        break;
    }
  }
  return l;
}

TEST_F(CudaOpsTest, ArgmaxMatchesCpuWithTies) {
  std::mt19937 rng(16);
  for (int vocab : {1, 7, 513, 32000, 151936, 262144}) {
    for (int64_t rows : {1, 13}) {
      SCOPED_TRACE(::testing::Message() << "vocab " << vocab << " rows " << rows);
      const std::vector<float> logits = ArgmaxRows(rows, vocab, rng);
      DeviceBuffer<float> d_logits(logits);
      DeviceBuffer<int32_t> d_out(rows);
      ASSERT_NE(d_out.get(), nullptr);
      ASSERT_EQ(Argmax(d_logits.get(), rows, vocab, d_out.get(), nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<int32_t> got = d_out.Read();
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(got[r], moeserve::Argmax(logits.data() + r * vocab, vocab))
            << "row " << r << " (tie pattern " << r % 6 << ")";
      }
    }
  }
}

TEST_F(CudaOpsTest, ArgmaxTreatsNanAsTheCpuScanDoes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (int vocab : {7, 32000}) {
    std::vector<std::vector<float>> cases;
    std::vector<float> base(vocab);
    for (int i = 0; i < vocab; ++i) base[i] = std::sin(0.37f * i);
    auto with = [&](std::initializer_list<std::pair<int, float>> set) {
      std::vector<float> row = base;
      for (auto [i, v] : set) row[i] = v;
      cases.push_back(row);
    };
    with({{0, nan}});                                   // NaN at 0: the CPU keeps 0
    with({{0, nan}, {vocab - 1, inf}});                 // ... even against +inf
    with({{1, nan}, {vocab / 2, 5.0f}});                // NaN elsewhere is never taken
    with({{vocab - 1, nan}});
    cases.push_back(std::vector<float>(vocab, nan));    // all NaN: 0
    cases.push_back(std::vector<float>(vocab, -inf));   // all -inf: 0
    with({{0, -inf}, {1, nan}, {2, -inf}});
    const int64_t rows = cases.size();
    std::vector<float> logits;
    for (const auto& c : cases) logits.insert(logits.end(), c.begin(), c.end());
    DeviceBuffer<float> d_logits(logits);
    DeviceBuffer<int32_t> d_out(rows);
    ASSERT_EQ(Argmax(d_logits.get(), rows, vocab, d_out.get(), nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<int32_t> got = d_out.Read();
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_EQ(got[r], moeserve::Argmax(logits.data() + r * vocab, vocab))
          << "vocab " << vocab << " case " << r;
    }
  }
}

// ---- SampleFromLogits --------------------------------------------------------

// The CPU mirror is engine/sample_with_draw_testing.h SampleWithDraw: the
// sampler's math with a given draw, checked against Sampler itself below.

double UniformDraw(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// SampleWithDraw is Sampler::Sample, given Sampler's own draws.
TEST(CudaOpsCpuMirror, CpuSampleIsSamplerSample) {
  std::mt19937 rng(17);
  for (int vocab : {1, 7, 1000}) {
    const std::vector<float> logits = RandomFloats(vocab, 3.0f, rng);
    for (float t : {0.0f, 0.5f, 1.0f, 2.0f}) {
      Sampler sampler({t, 99});
      std::mt19937_64 draws(99);
      for (int k = 0; k < 200; ++k) {
        const double u = t > 0.0f ? UniformDraw(draws) : 0.0;
        ASSERT_EQ(SampleWithDraw(logits.data(), vocab, t, u).token,
                  sampler.Sample(logits.data(), vocab))
            << "vocab " << vocab << " T " << t << " draw " << k;
      }
    }
  }
}

TEST_F(CudaOpsTest, SampleFromLogitsMatchesSamplerMath) {
  std::mt19937 rng(18);
  std::mt19937_64 draws(19);
  const float kTemps[] = {0.0f, 0.3f, 0.7f, 1.0f, 1.5f, -1.0f, 0.05f};
  // Rows that differ from the CPU at a boundary: with random draws (should
  // be ~0), and with u planted at the very top (1 - 2^-53: always within
  // rounding of the sum, where tokens of negligible p may go either way).
  int64_t near_random = 0, near_top = 0, compared = 0;
  struct Case {
    int vocab;
    int64_t rows;
  };
  for (const Case c : {Case{1, 10}, Case{7, 300}, Case{513, 100}, Case{32000, 64},
                       Case{151936, 24}, Case{262144, 6}}) {
    const int vocab = c.vocab;
    const int64_t rows = c.rows;
    SCOPED_TRACE(::testing::Message() << "vocab " << vocab << " rows " << rows);
    std::vector<float> logits = RandomFloats(rows * vocab, 3.0f, rng);
    std::vector<float> temperature(rows);
    std::vector<double> uniform(rows);
    for (int64_t r = 0; r < rows; ++r) {
      temperature[r] = kTemps[r % 7];
      uniform[r] = UniformDraw(draws);
      float* row = logits.data() + r * vocab;
      if (r % 5 == 1) {  // most tokens masked with -inf: p = 0, never chosen
        for (int i = 0; i < vocab; ++i) {
          if (std::uniform_int_distribution<int>(0, 9)(rng) != 0) {
            row[i] = -std::numeric_limits<float>::infinity();
          }
        }
        row[std::uniform_int_distribution<int>(0, vocab - 1)(rng)] = 1.0f;  // one left at least
      } else if (r % 5 == 2) {  // peaked: one token holds almost all the mass
        row[std::uniform_int_distribution<int>(0, vocab - 1)(rng)] = 25.0f;
      }
      if (r % 11 == 3) uniform[r] = 0.0;              // the first token with mass
      if (r % 11 == 4) uniform[r] = 1.0 - 0x1.0p-53;  // the very top
    }
    DeviceBuffer<float> d_logits(logits), d_temperature(temperature);
    DeviceBuffer<double> d_uniform(uniform);
    DeviceBuffer<int32_t> d_out(rows);
    ASSERT_NE(d_out.get(), nullptr);
    ASSERT_EQ(SampleFromLogits(d_logits.get(), rows, vocab, d_temperature.get(), d_uniform.get(),
                               d_out.get(), nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<int32_t> got = d_out.Read();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * vocab;
      const CpuDraw want = SampleWithDraw(row, vocab, temperature[r], uniform[r]);
      ++compared;
      ASSERT_GE(got[r], 0) << "row " << r << " not written";
      ASSERT_LT(got[r], vocab) << "row " << r;
      if (temperature[r] > 0.0f) {
        ASSERT_NE(row[got[r]], -std::numeric_limits<float>::infinity())
            << "row " << r << " chose a token with p = 0";
      }
      if (got[r] != want.token) {
        ASSERT_TRUE(want.near_boundary)
            << "row " << r << " T " << temperature[r] << " u " << uniform[r] << ": token "
            << got[r] << " vs cpu " << want.token;
        ++(r % 11 == 4 ? near_top : near_random);
      }
    }
  }
  std::printf(
      "SampleFromLogits: of %lld rows, %lld differ from the CPU at a boundary with random u, "
      "%lld with u = 1 - 2^-53\n",
      static_cast<long long>(compared), static_cast<long long>(near_random),
      static_cast<long long>(near_top));
  EXPECT_LE(near_random, 2) << "more boundary cases than double rounding explains";
}

// ---- Shapes (no GPU needed: the launchers check before any CUDA call) --------

TEST(CudaOpsShapes, RejectsShapesTheKernelsCannotTake) {
  float* f = reinterpret_cast<float*>(0x1000);  // never dereferenced
  uint16_t* b = reinterpret_cast<uint16_t*>(0x1000);
  int32_t* i = reinterpret_cast<int32_t*>(0x1000);
  double* d = reinterpret_cast<double*>(0x1000);
  constexpr cudaError_t kBad = cudaErrorInvalidValue;
  EXPECT_EQ(EmbeddingGather(b, 0, 8, i, 1, f, nullptr), kBad);
  EXPECT_EQ(EmbeddingGather(b, 10, 0, i, 1, f, nullptr), kBad);
  EXPECT_EQ(EmbeddingGather(b, 10, 8, i, -1, f, nullptr), kBad);
  EXPECT_EQ(EmbeddingGather(b, 10, 8, i, int64_t{1} << 31, f, nullptr), kBad);
  EXPECT_EQ(EmbeddingGather(nullptr, 10, 8, i, 1, f, nullptr), kBad);
  EXPECT_EQ(RmsNormToBf16(f, 1, 0, f, 1e-6f, f, b, nullptr), kBad);
  EXPECT_EQ(RmsNormToBf16(f, -1, 8, f, 1e-6f, f, b, nullptr), kBad);
  EXPECT_EQ(RmsNormToBf16(f, 1, 8, f, 1e-6f, f, nullptr, nullptr), kBad);
  EXPECT_EQ(AddInPlace(f, f, -1, nullptr), kBad);
  EXPECT_EQ(AddInPlace(nullptr, f, 4, nullptr), kBad);
  EXPECT_EQ(Rope(f, 1, 4, 63, i, d, nullptr), kBad);
  EXPECT_EQ(Rope(f, 1, 4, 0, i, d, nullptr), kBad);
  EXPECT_EQ(Rope(f, 1, 4, 1026, i, d, nullptr), kBad);
  EXPECT_EQ(Rope(f, 1, 0, 64, i, d, nullptr), kBad);
  EXPECT_EQ(Rope(f, -1, 4, 64, i, d, nullptr), kBad);
  EXPECT_EQ(Argmax(f, 1, 0, i, nullptr), kBad);
  EXPECT_EQ(Argmax(f, 1, kMaxSampleVocab + 1, i, nullptr), kBad);
  EXPECT_EQ(Argmax(f, -1, 10, i, nullptr), kBad);
  EXPECT_EQ(SampleFromLogits(f, 1, 0, f, d, i, nullptr), kBad);
  EXPECT_EQ(SampleFromLogits(f, -1, 10, f, d, i, nullptr), kBad);
  EXPECT_EQ(SampleFromLogits(f, 1, 10, f, nullptr, i, nullptr), kBad);
  // Zero rows: nothing to do, nothing launched.
  EXPECT_EQ(EmbeddingGather(nullptr, 10, 8, nullptr, 0, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(RmsNormToBf16(nullptr, 0, 8, nullptr, 1e-6f, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(AddInPlace(nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(Rope(nullptr, 0, 4, 64, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(Argmax(nullptr, 0, 10, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(SampleFromLogits(nullptr, 0, 10, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace moeserve::cuda
