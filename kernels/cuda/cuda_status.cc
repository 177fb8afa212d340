#include "kernels/cuda/cuda_status.h"

#include "absl/strings/str_cat.h"

namespace moeserve::cuda {

absl::Status CudaError(cudaError_t err, const char* expr, const char* file, int line) {
  const std::string msg = absl::StrCat(file, ":", line, ": ", expr, " failed: ",
                                       cudaGetErrorName(err), " (", static_cast<int>(err),
                                       "): ", cudaGetErrorString(err));
  switch (err) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorInvalidValue:
      return absl::InvalidArgumentError(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<int> DeviceCount() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  if (err != cudaSuccess) return CudaError(err, "cudaGetDeviceCount", __FILE__, __LINE__);
  return n;
}

}  // namespace moeserve::cuda
