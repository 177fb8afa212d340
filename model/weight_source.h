// WeightSource: where a model's named tensors come from.
//
// The real implementation memory-maps a Hugging Face checkpoint directory:
// one `model.safetensors`, or shards listed by `model.safetensors.index.json`.
// InMemoryWeightSource holds tensors built in memory (tests, benchmarks with
// random weights).
//
// Contract: Get() returns a view whose bytes stay valid for the lifetime of
// the source; a missing tensor is NOT_FOUND naming the tensor and where it
// was looked for. Implementations are immutable after construction and safe
// to read from several threads.
#ifndef MOESERVE_MODEL_WEIGHT_SOURCE_H_
#define MOESERVE_MODEL_WEIGHT_SOURCE_H_

#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace moeserve {

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  virtual absl::StatusOr<TensorView> Get(absl::string_view name) const = 0;
  virtual bool Contains(absl::string_view name) const = 0;
  // The file (or other origin) that holds `name`, for error messages; a
  // description of the whole source when the tensor is absent.
  virtual std::string Location(absl::string_view name) const = 0;
  virtual std::vector<std::string> Names() const = 0;
};

// Opens a checkpoint directory: model.safetensors.index.json when present,
// else model.safetensors. Validates every file's header and that every tensor
// the index names is in the shard it names.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsDir(const std::string& dir);

// Opens a single .safetensors file.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsFile(const std::string& path);

// Tensors owned in memory. Add() copies the bytes.
class InMemoryWeightSource : public WeightSource {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape,
           std::string bytes);
  // Convenience: stores `values` converted to `dtype` (a compute dtype).
  void AddFloat(const std::string& name, DType dtype, std::vector<int64_t> shape,
                const std::vector<float>& values);

  absl::StatusOr<TensorView> Get(absl::string_view name) const override;
  bool Contains(absl::string_view name) const override;
  std::string Location(absl::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  struct Stored {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Stored, std::less<>> tensors_;
};

}  // namespace moeserve

#endif  // MOESERVE_MODEL_WEIGHT_SOURCE_H_
