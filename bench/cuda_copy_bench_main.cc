// Device-to-device copy bandwidth of GPU 0: cudaMemcpyAsync against the
// 16-byte vectorized copy kernel of bench/cuda_copy_bench.cu, the ceiling
// that memory-bound kernels (the MoE layer's expert GEMVs) are measured
// against. Bandwidth counts bytes read plus bytes written (2 x the copy).
//
//   bazel build -c opt //bench:cuda_copy_bench && bazel-bin/bench/cuda_copy_bench
//
// A 2 GiB source filled with non-zero pseudo-random words is copied 1 GiB at
// a time, alternating between two (source, destination) pairs so that the
// 50-60 MB L2 holds nothing of the next repetition. Each method is checked
// for exactness, warmed up, then timed one repetition at a time with CUDA
// events; the median is reported. The last line is machine-readable:
//
//   copy_method=vector_copy_kernel
//   copy_bandwidth_gbps=3012.4
//
// (the better of the two medians, and which method gave it). Without a GPU it
// prints "SKIPPED: no CUDA device" and exits 0; any CUDA error exits 1 with
// the failing call's file and line.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/cuda_copy_bench.h"
#include "common/cli_flags.h"
#include "kernels/cuda/cuda_status.h"

namespace moeserve::bench {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

struct Timing {
  const char* method;
  double median_gbps = 0, best_gbps = 0, worst_gbps = 0, median_ms = 0;
};

struct Buffers {
  uint4* src = nullptr;  // 2 x bytes: pair k reads src + k * n16
  uint4* dst = nullptr;  // 2 x bytes: pair k writes dst + k * n16
  unsigned long long* mismatches = nullptr;
  int64_t n16 = 0;  // vectors per copy
};

absl::Status PrintDevice(int device, double* peak_gbps) {
  cudaDeviceProp prop;
  MOE_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  int mem_khz = 0, bus_bits = 0, driver = 0, runtime = 0;
  // Attributes, not cudaDeviceProp fields: CUDA 13 dropped memoryClockRate.
  MOE_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device));
  MOE_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  MOE_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&driver));
  MOE_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&runtime));
  // Double data rate: two transfers per clock on each bus bit.
  *peak_gbps = 2.0 * mem_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  std::printf("device 0: %s (sm_%d%d), %d SMs, L2 %.1f MiB, %.1f GiB\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount, prop.l2CacheSize / double(kMiB),
              prop.totalGlobalMem / double(kMiB * 1024));
  std::printf("memory: %d MHz x %d-bit bus, theoretical peak %.1f GB/s\n", mem_khz / 1000, bus_bits,
              *peak_gbps);
  std::printf("CUDA driver %d.%d, runtime %d.%d\n", driver / 1000, driver % 1000 / 10,
              runtime / 1000, runtime % 1000 / 10);
  return absl::OkStatus();
}

absl::StatusOr<unsigned long long> Mismatches(const Buffers& b, const uint4* x, const uint4* y,
                                              int64_t n16) {
  MOE_CUDA_RETURN_IF_ERROR(cudaMemset(b.mismatches, 0, sizeof(*b.mismatches)));
  MOE_CUDA_RETURN_IF_ERROR(CountMismatches(x, y, n16, b.mismatches, nullptr));
  unsigned long long host = 0;
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpy(&host, b.mismatches, sizeof(host), cudaMemcpyDeviceToHost));
  return host;
}

// Both methods must copy exactly: the kernel on awkward sizes and grids (the
// grid-stride tail, one block, partial unroll) and the full size, stopping at
// the last vector; cudaMemcpyAsync on the full size of the other pair.
absl::Status CheckCopies(const Buffers& b) {
  struct Case {
    int64_t n16;
    int blocks;
  } cases[] = {{1, 0}, {19, 1}, {111, 3}, {989, 0}, {100003, 7}, {b.n16, 0}};
  for (const Case& c : cases) {
    MOE_CUDA_RETURN_IF_ERROR(FillNonZero(b.dst, b.n16, 7, nullptr));  // differs from src
    MOE_CUDA_RETURN_IF_ERROR(VectorCopy(b.src, b.dst, c.n16, c.blocks, nullptr));
    absl::StatusOr<unsigned long long> bad = Mismatches(b, b.src, b.dst, c.n16);
    if (!bad.ok()) return bad.status();
    absl::StatusOr<unsigned long long> past_end = 1ull;  // the full size has no "past"
    if (c.n16 < b.n16) past_end = Mismatches(b, b.src + c.n16, b.dst + c.n16, 1);
    if (!past_end.ok()) return past_end.status();
    if (*bad != 0 || *past_end != 1) {
      return absl::InternalError(absl::StrCat("vector copy of ", c.n16, " vectors (", c.blocks,
                                              " blocks): ", *bad, " wrong, past-the-end ",
                                              *past_end == 1 ? "intact" : "overwritten"));
    }
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.dst + b.n16, b.src + b.n16, b.n16 * sizeof(uint4),
                                           cudaMemcpyDeviceToDevice, nullptr));
  absl::StatusOr<unsigned long long> bad = Mismatches(b, b.src + b.n16, b.dst + b.n16, b.n16);
  if (!bad.ok()) return bad.status();
  if (*bad != 0) return absl::InternalError(absl::StrCat("cudaMemcpyAsync: ", *bad, " wrong"));
  return absl::OkStatus();
}

absl::StatusOr<Timing> TimeCopies(const Buffers& b, bool kernel, int warmup, int reps) {
  cudaEvent_t start, stop;
  MOE_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  MOE_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const int64_t bytes = b.n16 * int64_t{sizeof(uint4)};
  std::vector<double> gbps;
  for (int r = 0; r < warmup + reps; ++r) {
    const int64_t offset = (r % 2) * b.n16;  // alternate pairs: nothing left in L2
    MOE_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, nullptr));
    if (kernel) {
      MOE_CUDA_RETURN_IF_ERROR(VectorCopy(b.src + offset, b.dst + offset, b.n16, 0, nullptr));
    } else {
      MOE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.dst + offset, b.src + offset, bytes,
                                               cudaMemcpyDeviceToDevice, nullptr));
    }
    MOE_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, nullptr));
    MOE_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    MOE_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    if (r >= warmup) gbps.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);  // read + write
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaEventDestroy(start));
  MOE_CUDA_RETURN_IF_ERROR(cudaEventDestroy(stop));
  std::sort(gbps.begin(), gbps.end());
  Timing t{kernel ? "vector_copy_kernel" : "cudaMemcpyAsync"};
  t.median_gbps = gbps.size() % 2 ? gbps[gbps.size() / 2]
                                  : 0.5 * (gbps[gbps.size() / 2 - 1] + gbps[gbps.size() / 2]);
  t.best_gbps = gbps.back();
  t.worst_gbps = gbps.front();
  t.median_ms = 2.0 * bytes / (t.median_gbps * 1e9) * 1e3;
  return t;
}

absl::Status Run(int argc, char** argv, bool* skipped) {
  int size_mib = 1024, reps = 20, warmup = 3;
  FlagSet flags("cuda_copy_bench", "Device-to-device copy bandwidth of GPU 0 (read + write).");
  flags.Int("size-mib", &size_mib, "MIB", "Bytes per copy; the benchmark allocates 4x this.");
  flags.Int("reps", &reps, "N", "Timed repetitions per method (median reported).");
  flags.Int("warmup", &warmup, "N", "Untimed repetitions before them.");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok() || flags.help_requested()) {
    std::cerr << flags.Usage();
    return s;
  }
  if (size_mib < 1 || reps < 1 || warmup < 0) {
    return absl::InvalidArgumentError("--size-mib and --reps must be >= 1, --warmup >= 0");
  }
  absl::StatusOr<int> devices = cuda::DeviceCount();
  if (!devices.ok()) return devices.status();
  if (*devices == 0) {
    *skipped = true;
    return absl::OkStatus();
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(0));
  double peak_gbps = 0;
  if (absl::Status s = PrintDevice(0, &peak_gbps); !s.ok()) return s;

  size_t free_bytes = 0, total_bytes = 0;
  MOE_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  int64_t bytes = size_mib * kMiB;
  while (bytes > 64 * kMiB && 4 * bytes + 256 * kMiB > static_cast<int64_t>(free_bytes)) {
    bytes /= 2;  // a shared or small GPU: still far larger than L2
  }
  if (bytes != size_mib * kMiB) {
    std::printf("note: %.0f MiB free, copy size lowered to %lld MiB\n", free_bytes / double(kMiB),
                static_cast<long long>(bytes / kMiB));
  }
  Buffers b;
  b.n16 = bytes / int64_t{sizeof(uint4)};
  MOE_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&b.src), 2 * bytes));
  MOE_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&b.dst), 2 * bytes));
  MOE_CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&b.mismatches), 8));
  MOE_CUDA_RETURN_IF_ERROR(FillNonZero(b.src, 2 * b.n16, 1, nullptr));
  MOE_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  if (absl::Status s = CheckCopies(b); !s.ok()) return s;
  std::printf("copy checks passed; %lld MiB per copy, 2 buffer pairs, %d warm-up + %d timed\n",
              static_cast<long long>(bytes / kMiB), warmup, reps);

  std::vector<Timing> timings;
  for (bool kernel : {false, true}) {
    absl::StatusOr<Timing> t = TimeCopies(b, kernel, warmup, reps);
    if (!t.ok()) return t.status();
    timings.push_back(*t);
  }
  MOE_CUDA_RETURN_IF_ERROR(cudaFree(b.src));
  MOE_CUDA_RETURN_IF_ERROR(cudaFree(b.dst));
  MOE_CUDA_RETURN_IF_ERROR(cudaFree(b.mismatches));

  std::printf("%-20s %12s %12s %12s %10s %8s\n", "method (read+write)", "median GB/s", "best GB/s",
              "worst GB/s", "median ms", "of peak");
  for (const Timing& t : timings) {
    std::printf("%-20s %12.1f %12.1f %12.1f %10.3f %7.1f%%\n", t.method, t.median_gbps, t.best_gbps,
                t.worst_gbps, t.median_ms, 100.0 * t.median_gbps / peak_gbps);
  }
  const Timing& best = *std::max_element(
      timings.begin(), timings.end(),
      [](const Timing& x, const Timing& y) { return x.median_gbps < y.median_gbps; });
  std::printf("copy_method=%s\n", best.method);
  std::printf("copy_bandwidth_gbps=%.1f\n", best.median_gbps);
  return absl::OkStatus();
}

}  // namespace
}  // namespace moeserve::bench

int main(int argc, char** argv) {
  bool skipped = false;
  const absl::Status s = moeserve::bench::Run(argc, argv, &skipped);
  if (!s.ok()) {
    std::fprintf(stderr, "cuda_copy_bench: %s\n", std::string(s.ToString()).c_str());
    return 1;
  }
  if (skipped) std::printf("SKIPPED: no CUDA device\n");
  return 0;
}
