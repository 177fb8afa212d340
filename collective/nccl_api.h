// <nccl.h> and the CUDA runtime API for the NCCL collective (internal).
#ifndef MOESERVE_COLLECTIVE_NCCL_API_H_
#define MOESERVE_COLLECTIVE_NCCL_API_H_

#include <cuda_runtime_api.h>
#include <nccl.h>  // IWYU pragma: export

#endif  // MOESERVE_COLLECTIVE_NCCL_API_H_
