// Internal: the memory-bound matrix-times-few-vectors kernels behind Linear().
//
// y[t, r] = sum_c x[t, c] * W[r, c] for t < n (n <= kGemvMaxTokens) and rows
// r in [row_begin, row_end), with W stored as F32, BF16 or F16 (converted
// to float exactly in registers) and x, y in float. Each W row is read once and
// applied to all n vectors, so the cost is one pass over the weights.
//
// Versions (chosen once at run time by the CPU's features):
//   avx512 — 32 weights per step, two 16-lane FMAs per vector
//   avx2   — 16 weights per step (F16C for F16)
//   generic— plain loops; the reference the others are tested against
// Napkin math: a 768x2048 BF16 expert matrix is 3 MiB; at ~20 GB/s per core
// that is ~150 us, against ~1.6 MFLOP per token, so the kernel is bound by
// memory for n up to ~16 and wants only to keep the loads streaming.
#ifndef MOESERVE_KERNELS_CPU_GEMV_H_
#define MOESERVE_KERNELS_CPU_GEMV_H_

#include <cstdint>

#include "common/dtype.h"

namespace moeserve::kernels::cpu {

inline constexpr int kGemvMaxTokens = 4;

struct GemvArgs {
  const float* x;     // [n, cols]
  int n;
  const void* w;      // [rows, cols] of dtype
  DType dtype;        // kF32, kBF16 or kF16
  int64_t cols;
  int64_t row_begin;
  int64_t row_end;
  float* y;           // [n, rows]: writes y[t * rows + r]
  int64_t rows;       // y's row stride
};

void GemvGeneric(const GemvArgs& a);
void GemvAvx2(const GemvArgs& a);
void GemvAvx512(const GemvArgs& a);

enum class Isa { kGeneric, kAvx2, kAvx512 };
// The best version this CPU runs; MOESERVE_ISA=generic|avx2|avx512 overrides
// (for tests and benchmarks).
Isa DetectIsa();
const char* IsaName(Isa isa);
void Gemv(Isa isa, const GemvArgs& a);

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_GEMV_H_
