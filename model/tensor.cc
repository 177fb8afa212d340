#include "model/tensor.h"

#include "absl/strings/str_join.h"

namespace moeserve {

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorView TensorView::SliceRows(int64_t begin, int64_t end) const {
  TensorView out = *this;
  out.shape[0] = end - begin;
  const int64_t row = numel() / (shape[0] == 0 ? 1 : shape[0]);
  out.data = static_cast<const char*>(data) + begin * row * DTypeSize(dtype);
  return out;
}

TensorView TensorView::Index(int64_t i) const {
  TensorView out = SliceRows(i, i + 1);
  out.shape.erase(out.shape.begin());
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

}  // namespace moeserve
