// Achieved bandwidth of the CPU Linear kernel at batch 1 on the matrix shapes
// of Qwen3-30B-A3B decode, next to the memory-bandwidth probe.
//
//   bazel run //bench:linear_bench -- --threads 2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <vector>

#include "bench/membw.h"
#include "common/cli_flags.h"
#include "common/dtype.h"
#include "kernels/cpu/gemv.h"
#include "kernels/cpu/linear.h"

namespace moeserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int Run(int argc, char** argv) {
  int threads = 0, repeats = 20, n = 1;
  FlagSet flags("linear_bench", "Batch-n Linear bandwidth on Qwen3-30B-A3B shapes (BF16).");
  flags.Int("threads", &threads, "N", "Threads (0: all cores).");
  flags.Int("repeats", &repeats, "N", "Timed calls per shape (median reported).");
  flags.Int("n", &n, "N", "Tokens per call.");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok() || flags.help_requested()) {
    std::cerr << flags.Usage();
    return s.ok() ? 0 : 2;
  }
  kernels::cpu::SetNumThreads(threads);
  struct Shape {
    const char* name;
    int64_t rows, cols, copies;  // copies: distinct matrices cycled so caches do not help
  } shapes[] = {{"lm_head 151936x2048", 151936, 2048, 1},
                {"q_proj 4096x2048", 4096, 2048, 16},
                {"expert gate 768x2048", 768, 2048, 128},
                {"expert down 2048x768", 2048, 768, 128}};
  const auto bw = bench::MeasureBandwidth(size_t{1} << 30, 5, kernels::cpu::NumThreads());
  std::printf("threads %d, isa %s, n %d, probe read %.1f GB/s\n", kernels::cpu::NumThreads(),
              kernels::cpu::IsaName(kernels::cpu::DetectIsa()), n, bw.read_gbps);
  for (const Shape& s : shapes) {
    const int64_t elems = s.rows * s.cols;
    std::vector<uint16_t> w(elems * s.copies);
    for (size_t i = 0; i < w.size(); ++i) w[i] = FloatToBF16(static_cast<float>(i % 97) * 1e-3f);
    std::vector<float> x(n * s.cols, 0.01f), y(n * s.rows);
    std::vector<double> times;
    for (int r = 0; r < repeats + s.copies; ++r) {
      const kernels::cpu::Weight weight{DType::kBF16, w.data() + (r % s.copies) * elems, s.rows,
                                        s.cols};
      const double t0 = Now();
      kernels::cpu::Linear(x.data(), n, weight, nullptr, y.data());
      if (r >= s.copies) times.push_back(Now() - t0);
    }
    std::sort(times.begin(), times.end());
    const double t = times[times.size() / 2];
    const double gbps = elems * 2.0 / t / 1e9;
    std::printf("  %-24s %9.1f us  %6.1f GB/s  %5.1f%% of read bw\n", s.name, t * 1e6, gbps,
                100 * gbps / bw.read_gbps);
  }
  return 0;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) { return moeserve::Run(argc, argv); }
