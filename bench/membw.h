// A memory-bandwidth probe: how fast this machine streams memory into the
// cores, which bounds batch-1 decode (every weight byte is read once per
// token). Used by the decode benchmark to state its result as a fraction of
// what the hardware can do, measured in the same run.
#ifndef MOESERVE_BENCH_MEMBW_H_
#define MOESERVE_BENCH_MEMBW_H_

#include <cstddef>

namespace moeserve::bench {

struct BandwidthResult {
  double read_gbps = 0;  // best repeat, reading with all threads
  double copy_gbps = 0;  // best repeat of memcpy, counting read + write bytes
};

// Streams a buffer of `bytes` (well beyond the caches) `repeats` times with
// `threads` OpenMP threads.
BandwidthResult MeasureBandwidth(size_t bytes, int repeats, int threads);

}  // namespace moeserve::bench

#endif  // MOESERVE_BENCH_MEMBW_H_
