#include "kernels/cpu/linear.h"

#include <cblas.h>
#include <omp.h>

#include <sched.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {
namespace {

// Below this many weight elements a parallel region costs more than it saves.
constexpr int64_t kMinParallelElements = 1 << 15;
// Converted float tile size for the GEMM path (elements).
constexpr int64_t kTileElements = 1 << 21;  // 8 MiB of float

int g_threads = 0;  // 0: not set; OpenMP's default

bool Parallel() { return (g_threads > 0 ? g_threads : omp_get_max_threads()) > 1; }

// n <= kGemvMaxTokens: one pass over the weights for all n vectors.
void StreamingGemv(const float* x, int64_t n, const Weight& w, float* y) {
  const Isa isa = DetectIsa();
  const int64_t rows = w.rows;
  const bool parallel = rows * w.cols >= kMinParallelElements && Parallel();
  // Row blocks of 16 keep each thread's stream contiguous.
  const int64_t block = 16;
  const int64_t blocks = (rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    GemvArgs a{x, static_cast<int>(n), w.data, w.dtype, w.cols, b * block,
               std::min(rows, (b + 1) * block), y, rows};
    Gemv(isa, a);
  }
}

void LowPrecisionGemm(const float* x, int64_t n, const Weight& w, float* y) {
  static thread_local std::vector<float> tile;
  const int64_t tile_rows = std::max<int64_t>(1, std::min(w.rows, kTileElements / w.cols));
  tile.resize(tile_rows * w.cols);
  const uint16_t* src = static_cast<const uint16_t*>(w.data);
  for (int64_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
    const int64_t nr = std::min(tile_rows, w.rows - r0);
    float* dst = tile.data();
#pragma omp parallel for schedule(static) if (nr * w.cols >= kMinParallelElements)
    for (int64_t r = 0; r < nr; ++r) {
      ConvertToFloat(w.dtype, src + (r0 + r) * w.cols, w.cols, dst + r * w.cols);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                static_cast<int>(nr), static_cast<int>(w.cols), 1.0f, x,
                static_cast<int>(w.cols), dst, static_cast<int>(w.cols), 0.0f, y + r0,
                static_cast<int>(w.rows));
  }
}

}  // namespace

void Linear(const float* x, int64_t n, const Weight& w, const float* bias, float* y) {
  if (n <= 0) return;
  if (n <= kGemvMaxTokens) {
    StreamingGemv(x, n, w, y);
  } else if (w.dtype != DType::kF32 && n <= kLowPrecisionGemvMaxTokens) {
    for (int64_t t = 0; t < n; t += kGemvMaxTokens) {
      StreamingGemv(x + t * w.cols, std::min<int64_t>(kGemvMaxTokens, n - t), w, y + t * w.rows);
    }
  } else if (w.dtype == DType::kF32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                static_cast<int>(w.rows), static_cast<int>(w.cols), 1.0f, x,
                static_cast<int>(w.cols), static_cast<const float*>(w.data),
                static_cast<int>(w.cols), 0.0f, y, static_cast<int>(w.rows));
  } else {
    LowPrecisionGemm(x, n, w, y);
  }
  if (bias != nullptr) {
    for (int64_t t = 0; t < n; ++t) {
      float* row = y + t * w.rows;
      for (int64_t r = 0; r < w.rows; ++r) row[r] += bias[r];
    }
  }
}

void GatherRows(const Weight& table, const int32_t* ids, int64_t n, float* out) {
  const size_t row_bytes = static_cast<size_t>(table.cols) * DTypeSize(table.dtype);
  for (int64_t i = 0; i < n; ++i) {
    const char* row = static_cast<const char*>(table.data) + ids[i] * row_bytes;
    ConvertToFloat(table.dtype, row, table.cols, out + i * table.cols);
  }
}

void SetNumThreads(int n) {
  if (n <= 0) {
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    n = std::max(1, n);
  }
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int NumThreads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace moeserve::kernels::cpu
