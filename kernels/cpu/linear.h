// Linear layers on the CPU: y[n, out] = x[n, in] · W[out, in]^T (+ bias).
//
// W may be F32, BF16 or F16, read in place (usually memory-mapped). Paths:
//   n ≤ kGemvMaxTokens (decode) → our streaming GEMV (gemv.h), rows split
//                   over the OpenMP threads. OpenBLAS has no GEMV that keeps
//                   the activations in float for BF16 weights (cblas_sbgemv
//                   wants bf16 x), and for F32 its sgemv would wake its own
//                   thread pool, whose spinning threads then compete with
//                   the next OpenMP loops; decode stays on one thread pool.
//   larger n, F32  → OpenBLAS sgemm.
//   BF16/F16 and n ≤ kLowPrecisionGemvMaxTokens (a batch of decode steps) →
//                   the streaming GEMV on groups of kGemvMaxTokens tokens:
//                   reading 2-byte weights n/4 times costs less than
//                   converting them to float and running sgemm, up to ~16.
//   larger n, BF16/F16 → tiles of W converted to float, then OpenBLAS sgemm
//                   (compute-bound prefill, where conversion is amortised).
// Accumulation is in float throughout.
//
// Threading: call from one thread at a time (the engine's thread). The thread
// count is set once with SetNumThreads and covers OpenMP and OpenBLAS.
#ifndef MOESERVE_KERNELS_CPU_LINEAR_H_
#define MOESERVE_KERNELS_CPU_LINEAR_H_

#include <cstdint>

#include "common/dtype.h"

namespace moeserve::kernels::cpu {

inline constexpr int64_t kLowPrecisionGemvMaxTokens = 16;

// A row-major [rows, cols] weight matrix (rows = out features).
struct Weight {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

void Linear(const float* x, int64_t n, const Weight& w, const float* bias, float* y);

// Embedding lookup: out[i, :] = float(table[ids[i], :]). ids must be in
// [0, table.rows).
void GatherRows(const Weight& table, const int32_t* ids, int64_t n, float* out);

// Sets the threads used by the CPU kernels (OpenMP) and OpenBLAS. n <= 0
// means one per available core.
void SetNumThreads(int n);
int NumThreads();

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_LINEAR_H_
