// A device buffer for the CUDA kernel tests: allocated with cudaMalloc and
// poisoned with 0xff bytes (NaN as float and as bf16, -1 as int32), so
// anything a kernel fails to write shows up; copies in from and out to host
// vectors. get() is null when the allocation failed (tests ASSERT on it).
#ifndef MOESERVE_KERNELS_CUDA_DEVICE_BUFFER_TESTING_H_
#define MOESERVE_KERNELS_CUDA_DEVICE_BUFFER_TESTING_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace moeserve::cuda {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)) !=
        cudaSuccess) {
      p_ = nullptr;
    } else {
      Poison();
    }
  }
  explicit DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) { Write(v); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  void Poison() { cudaMemset(p_, 0xff, std::max<size_t>(n_, 1) * sizeof(T)); }
  void Write(const std::vector<T>& v) {
    if (p_) cudaMemcpy(p_, v.data(), std::min(v.size(), n_) * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> Read() const {
    std::vector<T> v(n_);
    cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_DEVICE_BUFFER_TESTING_H_
