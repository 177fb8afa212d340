// CUDA errors as absl::Status, with the file and line of the failing call.
//
//   MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(...));
//
// And device discovery that tells "no GPU here" apart from real failures:
// cudaErrorInsufficientDriver (35, the toolkit without a driver, as on the
// CI machines) and cudaErrorNoDevice (100) both mean zero devices.
#ifndef MOESERVE_KERNELS_CUDA_CUDA_STATUS_H_
#define MOESERVE_KERNELS_CUDA_CUDA_STATUS_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moeserve::cuda {

absl::Status CudaError(cudaError_t err, const char* expr, const char* file, int line);

// Number of usable GPUs; 0 when there is no driver or no device.
absl::StatusOr<int> DeviceCount();

}  // namespace moeserve::cuda

#define MOE_CUDA_RETURN_IF_ERROR(expr)                                             \
  do {                                                                             \
    cudaError_t moe_cuda_err_ = (expr);                                            \
    if (moe_cuda_err_ != cudaSuccess) {                                            \
      return ::moeserve::cuda::CudaError(moe_cuda_err_, #expr, __FILE__, __LINE__); \
    }                                                                              \
  } while (0)

#endif  // MOESERVE_KERNELS_CUDA_CUDA_STATUS_H_
