// The CUDA dense bf16 GEMM (linear.h) against the CPU Linear on seeded
// random data of awkward shapes: output widths not a multiple of 16 (the
// packed weight's zero padding must not leak), one token and many, K from 16
// to 2048, and a wide lm_head-like output. Skipped, saying so, where no GPU
// is present.
//
// Tolerance: both sides multiply the same bf16 values exactly in fp32 and
// sum in fp32 in different orders, ~1e-7 * sqrt(K) relative to the row's
// scale; 2e-5 of the scale.
#include "kernels/cuda/linear.h"

#include <cmath>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cpu/linear.h"
#include "kernels/cuda/cuda_status.h"

namespace moeserve::cuda {
namespace {

template <typename T>
T* DeviceCopy(const std::vector<T>& v, size_t n = 0) {
  T* p = nullptr;
  const size_t count = std::max(v.size(), n);
  if (cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(count, 1) * sizeof(T)) !=
      cudaSuccess) {
    return nullptr;
  }
  cudaMemset(p, 0xff, std::max<size_t>(count, 1) * sizeof(T));  // poison
  if (!v.empty()) cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return p;
}

template <typename T>
std::vector<T> Read(const T* p, size_t n) {
  std::vector<T> v(n);
  cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

class CudaLinearTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto devices = DeviceCount();
    ASSERT_TRUE(devices.ok()) << devices.status();
    if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernels were built, not run";
  }
};

TEST_F(CudaLinearTest, MatchesCpuLinear) {
  struct Shape {
    int64_t n;
    int in, out;
  };
  for (const Shape s : {Shape{1, 16, 5}, Shape{3, 64, 37}, Shape{33, 2048, 4096},
                        Shape{300, 128, 100}, Shape{5, 2048, 32003}, Shape{64, 768, 2048},
                        Shape{129, 32, 16}}) {
    SCOPED_TRACE(::testing::Message() << "n=" << s.n << " in=" << s.in << " out=" << s.out);
    std::mt19937 rng(s.n * 31 + s.in * 7 + s.out);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<uint16_t> x(s.n * s.in), w(int64_t{s.out} * s.in);
    for (auto& v : x) v = FloatToBF16(dist(rng));
    for (auto& v : w) v = FloatToBF16(dist(rng) / std::sqrt(float(s.in)));
    std::vector<float> xf(x.size());
    for (size_t i = 0; i < x.size(); ++i) xf[i] = BF16ToFloat(x[i]);
    std::vector<float> want(s.n * s.out);
    kernels::cpu::Linear(xf.data(), s.n, kernels::cpu::Weight{DType::kBF16, w.data(), s.out, s.in},
                         nullptr, want.data());

    uint16_t* d_x = DeviceCopy(x);
    uint16_t* d_w = DeviceCopy(w);
    uint16_t* d_packed = DeviceCopy(std::vector<uint16_t>(), LinearPackedSize(s.out, s.in));
    ASSERT_NE(d_packed, nullptr);
    ASSERT_EQ(PackLinearWeight(d_w, s.out, s.in, d_packed, nullptr), cudaSuccess);
    std::vector<float> first;
    for (int variant = 0; variant <= kLinearVariants; ++variant) {
      float* d_y = DeviceCopy(std::vector<float>(), s.n * s.out);
      ASSERT_EQ(LinearBf16(d_x, s.n, s.in, d_packed, s.out, d_y, nullptr, variant), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = Read(d_y, s.n * s.out);
      cudaFree(d_y);
      for (int64_t r = 0; r < s.n; ++r) {
        double scale = 0;
        for (int c = 0; c < s.out; ++c) scale += double(want[r * s.out + c]) * want[r * s.out + c];
        scale = std::sqrt(scale / s.out) + 1e-6;
        for (int c = 0; c < s.out; ++c) {
          const float g = got[r * s.out + c], e = want[r * s.out + c];
          ASSERT_FALSE(std::isnan(g)) << "variant " << variant << " y[" << r << "," << c
                                      << "] not written";
          ASSERT_NEAR(g, e, 2e-5 * scale) << "variant " << variant << " y[" << r << "," << c << "]";
        }
      }
    }
    cudaFree(d_x);
    cudaFree(d_w);
    cudaFree(d_packed);
  }
}

TEST_F(CudaLinearTest, FloatToBf16RoundsToNearestEven) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(100003);
  for (auto& v : x) v = dist(rng);
  x[0] = 1.00390625f;  // exactly between two bf16 values: rounds to even (1.0)
  x[1] = 1.01171875f;  // between 1.0078125 and 1.015625: rounds to even (1.015625)
  float* d_x = DeviceCopy(x);
  uint16_t* d_out = DeviceCopy(std::vector<uint16_t>(), x.size());
  ASSERT_EQ(FloatToBf16(d_x, x.size(), d_out, nullptr), cudaSuccess);
  const std::vector<uint16_t> got = Read(d_out, x.size());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], FloatToBF16(x[i])) << i;
  EXPECT_EQ(BF16ToFloat(got[0]), 1.0f);
  EXPECT_EQ(BF16ToFloat(got[1]), 1.015625f);
  cudaFree(d_x);
  cudaFree(d_out);
}

TEST_F(CudaLinearTest, RejectsShapesItCannotTake) {
  EXPECT_EQ(PackLinearWeight(nullptr, 8, 24, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LinearBf16(nullptr, 1, 24, nullptr, 8, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LinearBf16(nullptr, 1, 32, nullptr, 8, nullptr, nullptr, kLinearVariants + 1),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace moeserve::cuda
