// libFuzzer target for the safetensors header parser: any byte string, taken
// as a whole file image, must parse or fail with a status — never crash,
// hang, read out of bounds or overflow (built with ASan and UBSan).
// Run briefly by //model:safetensors_fuzz_test; by hand:
//   bazel build //model:safetensors_fuzz && bazel-bin/model/safetensors_fuzz \
//       -max_total_time=60 model/testdata/fuzz_corpus
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view image(reinterpret_cast<const char*>(data), size);
  auto header = moeserve::ParseSafetensorsBuffer(image, "fuzz.safetensors");
  if (header.ok()) {
    // Every accepted entry must lie inside the data section.
    uint64_t start = 0;
    (void)moeserve::ParseSafetensorsBuffer(image, "fuzz.safetensors", &start);
    for (const auto& e : header->entries) {
      if (e.end > size - start || e.begin > e.end) __builtin_trap();
    }
  }
  // The same bytes as a bare header over a few data sizes.
  for (uint64_t data_size : {uint64_t{0}, uint64_t{16}, uint64_t{1} << 40}) {
    (void)moeserve::ParseSafetensorsHeader(image, data_size, "fuzz.safetensors");
  }
  return 0;
}
