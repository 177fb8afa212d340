// Reading the safetensors format (https://github.com/huggingface/safetensors).
//
// A file is: an 8-byte little-endian header length N, N bytes of JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the data section.
//
// ParseSafetensorsHeader validates everything the official library does:
// known dtypes, non-negative shapes, byte sizes that match shape x dtype, and
// offsets that tile the data section exactly (in range, no overlap, no gap).
// Every error names the file and, where there is one, the tensor. It never
// crashes on arbitrary input (a libFuzzer target drives it).
//
// SafetensorsFile memory-maps a file read-only; the TensorViews it hands out
// point into the mapping and live as long as the SafetensorsFile.
//
// Thread safety: a SafetensorsFile is immutable after Open; share freely.
#ifndef MOESERVE_MODEL_SAFETENSORS_H_
#define MOESERVE_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "model/tensor.h"

namespace moeserve {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by name
  std::map<std::string, std::string> metadata;
};

// The official library's limit on the header size.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u << 20;

// Parses and validates `header_json` for a data section of `data_size` bytes.
// `file_name` is used only in error messages.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size,
                                                         absl::string_view file_name);

// Parses a whole file image (length prefix + header + data) held in memory.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsBuffer(absl::string_view buffer,
                                                         absl::string_view file_name,
                                                         uint64_t* data_start = nullptr);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  // nullptr when absent.
  const SafetensorsEntry* Find(absl::string_view name) const;
  TensorView View(const SafetensorsEntry& entry) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;  // start of the data section
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> entries index
};

// Serialises tensors to the safetensors format (used by tests and tools that
// write checkpoints). Tensors are laid out in the order given.
struct SafetensorsWriteEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
std::string SerializeSafetensors(const std::vector<SafetensorsWriteEntry>& tensors,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace moeserve

#endif  // MOESERVE_MODEL_SAFETENSORS_H_
