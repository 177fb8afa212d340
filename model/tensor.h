// TensorView: a borrowed, typed view of a weight tensor's bytes.
//
// The bytes belong to whoever produced the view (a memory-mapped safetensors
// file, or an in-memory WeightSource in tests); a view must not outlive its
// source. Views are cheap to copy. Shapes follow PyTorch: row-major, the last
// dimension contiguous; linear weights are [out_features, in_features].
#ifndef MOESERVE_MODEL_TENSOR_H_
#define MOESERVE_MODEL_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace moeserve {

struct TensorView {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  int64_t dim(int i) const { return shape[i]; }
  int rank() const { return static_cast<int>(shape.size()); }

  // Rows [begin, end) along dimension 0. Requires 0 <= begin <= end <= dim(0).
  TensorView SliceRows(int64_t begin, int64_t end) const;
  // Element i along dimension 0, with that dimension dropped.
  TensorView Index(int64_t i) const;
};

// "[8, 64]"
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace moeserve

#endif  // MOESERVE_MODEL_TENSOR_H_
