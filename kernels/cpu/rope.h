// Rotary position embedding with Hugging Face's "rotate half" pairing:
// element i of a head is rotated together with element i + head_dim/2, by
// the angle position * theta^(-2i/head_dim).
//
// RopeTable precomputes the inverse frequencies; angles are formed in double
// and rounded once, so long positions lose no precision.
#ifndef MOESERVE_KERNELS_CPU_ROPE_H_
#define MOESERVE_KERNELS_CPU_ROPE_H_

#include <cstdint>
#include <vector>

namespace moeserve::kernels::cpu {

class RopeTable {
 public:
  RopeTable(int head_dim, double theta);

  // x: [n, heads, head_dim], rotated in place; positions: [n].
  void Apply(float* x, int64_t n, int heads, const int32_t* positions) const;

  int head_dim() const { return head_dim_; }
  // theta^(-2i/head_dim) for i in [0, head_dim/2): the GPU kernel takes these.
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  int head_dim_;
  std::vector<double> inv_freq_;  // [head_dim / 2]
};

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_ROPE_H_
