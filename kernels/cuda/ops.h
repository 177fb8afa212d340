// The small kernels of a forward pass on the GPU, around the GEMMs and the
// MoE block: embedding lookup, RMSNorm with the bf16 copy the GEMMs read,
// the residual add, rotary position embedding, and the sampler (greedy and
// temperature). Each computes what its CPU reference computes, named below,
// with the same floating-point operations in the same order wherever the
// order is not a reduction, so most results are bit-identical (the tests in
// ops_test.cc say how close each one is and why).
//
//   kernel            CPU reference                          ops_test.cc checks
//   EmbeddingGather   kernels/cpu/linear.h GatherRows (bf16)  exact
//   GatherRows        memcpy of each row                     exact
//   RmsNormToBf16     kernels/cpu/norm.h RmsNorm + FloatToBF16 1e-5 rel; bf16 1 ulp
//   AddInPlace        x[i] += y[i]                           exact
//   Rope              kernels/cpu/rope.h RopeTable::Apply    ~1 float ulp
//   Argmax            engine/sampler.h Argmax                exact
//   SampleFromLogits  engine/sampler.cc Sampler::Sample      same token
//
// Napkin math (H200, ~4.8 TB/s): every kernel here reads and writes each
// element once or twice, so all are bandwidth- or launch-bound: a [T, 4096]
// RMSNorm moves 36 KiB per row (x twice, weight, f32 and bf16 out), ~8 ns
// per row; launch overhead (~3 us) dominates below a few hundred rows.
// Sampling reads a 151936-token row (600 KiB) twice and takes ~150k double
// exps on one SM (~0.5 double TFLOP/s each): ~10-30 us per row, one block
// of 512 threads per row, rows in parallel.
//
// Conventions, as kernels/cuda/moe.h: bf16 is stored as uint16_t bit
// patterns, arithmetic is fp32 (double where the CPU reference uses double).
// Launchers take raw device pointers, sizes and a stream (FlashInfer style),
// check the shapes up front and return cudaErrorInvalidValue for ones the
// kernel cannot take (before any CUDA call), cudaSuccess without launching
// for zero rows, and otherwise the launch status. None synchronizes, so all
// can be captured in a CUDA graph. Pointers must be device pointers with the
// natural alignment of their type; 16-byte aligned ones (as cudaMalloc
// returns) take the vectorized paths.
#ifndef MOESERVE_KERNELS_CUDA_OPS_H_
#define MOESERVE_KERNELS_CUDA_OPS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moeserve::cuda {

// Embedding lookup: out[i, :] = float(table[ids[i], :]) for i in [0, n).
// table: [vocab, dim] bf16; ids: [n]; out: [n, dim] float. Exact (bf16 to
// float is exact). An id outside [0, vocab) gives a row of zeros: the
// launcher cannot see ids without synchronizing, so callers validate them
// (the CPU engine rejects such requests before they reach a kernel).
// One block per token; 16-byte loads of 8 bf16 when dim % 8 == 0.
// Shapes: vocab >= 1, dim >= 1, 0 <= n <= INT32_MAX.
cudaError_t EmbeddingGather(const uint16_t* table_bf16, int64_t vocab, int dim,
                            const int32_t* ids, int64_t n, float* out, cudaStream_t stream);

// RMSNorm as kernels/cpu/norm.h computes it, plus the bf16 rounding of the
// result (the input of the bf16 GEMMs):
//   scale = float(1 / sqrt(sum_i double(x[r,i])^2 / dim + eps))   (in double)
//   v     = x[r,i] * scale * weight[i]                            (float)
//   out_f32[r,i] = v (skipped when out_f32 is null); out_bf16[r,i] = bf16(v),
//   rounded to nearest even as common/dtype.h FloatToBF16.
// The sum of squares is in double, as on the CPU, in another order, so v is
// the CPU's value except when the double sums differ across a float rounding
// boundary of scale (rare; one float ulp). out_f32 may be x itself (in
// place); no other overlap. x, out_f32: [rows, dim]; weight: [dim].
// One block per row; 16-byte accesses when dim % 4 == 0.
// Shapes: dim >= 1, 0 <= rows <= INT32_MAX.
cudaError_t RmsNormToBf16(const float* x, int64_t rows, int dim, const float* weight, float eps,
                          float* out_f32_or_null, uint16_t* out_bf16, cudaStream_t stream);

// Row gather: dst row i = src row index[i] for i in [0, n), rows of
// row_bytes bytes (any element type: the expert exchange's bf16 send rows and
// float result rows). Exact: a copy. index values must lie in the source's
// rows (not checked: the launcher cannot read them without synchronizing).
// 16-byte copies when row_bytes % 16 == 0 and both pointers are 16-byte
// aligned, else 4-byte when that divides, else bytes. One block per row.
// Shapes: row_bytes >= 1, 0 <= n <= INT32_MAX.
cudaError_t GatherRows(const void* src, int64_t row_bytes, const int32_t* index, int64_t n,
                       void* dst, cudaStream_t stream);

// The residual add: x[i] += y[i] for i in [0, n), in float; exact. y may be
// x. 16-byte accesses when x and y are 16-byte aligned. Shapes: n >= 0.
cudaError_t AddInPlace(float* x, const float* y, int64_t n, cudaStream_t stream);

// Rotary position embedding in place, Hugging Face's rotate-half pairing, as
// kernels/cpu/rope.h RopeTable::Apply: for token t, head h and i < d/2 (d =
// head_dim), with a = x[t,h,i], b = x[t,h,i+d/2]:
//   angle = double(positions[t]) * inv_freq[i]        (double)
//   c = float(cos(angle)), s = float(sin(angle))
//   x[t,h,i] = a*c - b*s;  x[t,h,i+d/2] = b*c + a*s   (float, no FMA)
// inv_freq: [d/2] doubles on the device, RopeTable::inv_freq() as computed
// on the host, so the angle is the CPU's bit for bit; CUDA's double sin/cos
// are within 2 double ulp of the exact value (glibc's within 1), so c and s
// are the CPU's floats except when a value lies within ~1e-16 of a float
// rounding boundary (then one float ulp). x: [n, heads, head_dim]; positions: [n]. One block per token; the
// block computes the d/2 angles once for all heads.
// Shapes: head_dim even, 2 <= head_dim <= 1024; heads >= 1;
// heads * head_dim <= INT32_MAX; 0 <= n <= INT32_MAX.
cudaError_t Rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                 const double* inv_freq, cudaStream_t stream);

// The largest vocab the sampling kernels take (any tokenizer is far below).
inline constexpr int kMaxSampleVocab = 1 << 24;

// Greedy decoding: out[r] = the index of the largest logits[r, :], ties to
// the lowest index, exactly as engine/sampler.h Argmax (whose sequential
// `logits[i] > logits[best]` scan it reproduces for every input, NaN
// included: a NaN at index 0 wins, a NaN elsewhere never does; -0.0 and
// +0.0 tie). logits: [rows, vocab] float; out: [rows].
// One block per row. Shapes: 1 <= vocab <= kMaxSampleVocab,
// 0 <= rows <= INT32_MAX.
cudaError_t Argmax(const float* logits, int64_t rows, int vocab, int32_t* out,
                   cudaStream_t stream);

// Sampling per row, given the uniform draw, with engine/sampler.cc
// Sampler::Sample's math (the engine draws u on the host from the request's
// own generator, as (rng() >> 11) * 2^-53, and passes it here):
//   temperature[r] <= 0: Argmax;
//   otherwise, with m = max logits[r, :] and p_i = exp(double(l_i - m) / T)
//   (l_i - m in float, 1/T and the rest in double), the first i in index
//   order whose cumulative sum p_0 + ... + p_i exceeds u[r] * sum(p), and
//   only tokens with p_i > 0 can be chosen. The cumulative sums are a
//   block-wide prefix sum in double (each thread sums a contiguous slice in
//   order, then a scan over the slices): the same partial sums as the CPU's
//   sequential loop up to double rounding (~1e-16 relative), so the token is
//   the CPU's unless u * sum lies that close to a cumulative boundary. If
//   rounding leaves no cumulative above the threshold, the last token with
//   p_i > 0 (else 0), as the CPU's fallback.
// logits: [rows, vocab] float, NaN-free (NaN falls to the fallback);
// temperature: [rows] float; uniform: [rows] double in [0, 1); out: [rows].
// One block per row. Shapes: as Argmax.
cudaError_t SampleFromLogits(const float* logits, int64_t rows, int vocab,
                             const float* temperature, const double* uniform, int32_t* out,
                             cudaStream_t stream);

}  // namespace moeserve::cuda

#endif  // MOESERVE_KERNELS_CUDA_OPS_H_
