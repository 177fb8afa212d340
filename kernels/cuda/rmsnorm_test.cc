// The CUDA RMSNorm against the CPU reference on seeded, awkward sizes.
// Skipped, saying so, where no GPU is present.
#include "kernels/cuda/rmsnorm.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/cuda_status.h"

namespace moeserve::cuda {
namespace {

TEST(CudaRmsNormTest, MatchesCpuReference) {
  auto devices = DeviceCount();
  ASSERT_TRUE(devices.ok()) << devices.status();
  if (*devices == 0) GTEST_SKIP() << "no GPU on this machine; the CUDA kernel was built, not run";
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int dim : {1, 19, 111, 989, 2048}) {
    for (int rows : {1, 7, 300}) {
      std::vector<float> x(rows * dim), w(dim), want(rows * dim), got(rows * dim);
      for (auto& v : x) v = dist(rng);
      for (auto& v : w) v = 1.0f + 0.3f * dist(rng);
      kernels::cpu::RmsNorm(x.data(), rows, dim, w.data(), 1e-6f, want.data());
      float *dx, *dw, *dout;
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dx), x.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dw), w.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), got.size() * 4), cudaSuccess);
      cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
      ASSERT_EQ(RmsNorm(dx, rows, dim, dw, 1e-6f, dout, nullptr), cudaSuccess);
      cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost);
      cudaFree(dx);
      cudaFree(dw);
      cudaFree(dout);
      // float sums in a different order: ~1e-6 relative.
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::abs(want[i])))
            << "dim " << dim << " rows " << rows << " i " << i;
      }
    }
  }
}

}  // namespace
}  // namespace moeserve::cuda
