#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemv.h"

namespace moeserve::kernels::cpu {

void GemvGeneric(const GemvArgs& a) {
  std::vector<float> row(a.cols);
  const size_t row_bytes = a.cols * DTypeSize(a.dtype);
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    ConvertToFloat(a.dtype, static_cast<const char*>(a.w) + r * row_bytes, a.cols, row.data());
    for (int t = 0; t < a.n; ++t) {
      const float* x = a.x + t * a.cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < a.cols; ++c) acc += row[c] * x[c];
      a.y[t * a.rows + r] = acc;
    }
  }
}

Isa DetectIsa() {
  static const Isa isa = [] {
    const char* env = std::getenv("MOESERVE_ISA");
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    if (env != nullptr) {
      if (std::strcmp(env, "generic") == 0) return Isa::kGeneric;
      if (std::strcmp(env, "avx2") == 0 && avx2) return Isa::kAvx2;
    }
    if (avx512) return Isa::kAvx512;
    if (avx2) return Isa::kAvx2;
    return Isa::kGeneric;
  }();
  return isa;
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

void Gemv(Isa isa, const GemvArgs& a) {
  switch (isa) {
    case Isa::kAvx512:
      GemvAvx512(a);
      return;
    case Isa::kAvx2:
      GemvAvx2(a);
      return;
    default:
      GemvGeneric(a);
      return;
  }
}

}  // namespace moeserve::kernels::cpu
