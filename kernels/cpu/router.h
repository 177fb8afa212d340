// MoE routing: softmax over all experts (in float, as HF does with
// dtype=torch.float), the top-k, and optional renormalisation of the chosen
// weights to sum to 1 (Mixtral always; Qwen/OLMoE when norm_topk_prob).
//
// Ties keep the lower expert index first, as torch.topk does on the CPU.
#ifndef MOESERVE_KERNELS_CPU_ROUTER_H_
#define MOESERVE_KERNELS_CPU_ROUTER_H_

#include <cstdint>

namespace moeserve::kernels::cpu {

// logits: [n, experts]. Writes ids [n, k] (descending weight) and weights
// [n, k].
void RouteTopK(const float* logits, int64_t n, int experts, int k, bool renormalize,
               int32_t* ids, float* weights);

}  // namespace moeserve::kernels::cpu

#endif  // MOESERVE_KERNELS_CPU_ROUTER_H_
