// Decode steps of a Qwen3-30B-A3B-shaped model cut to a few layers, on one
// GPU, from our CUDA kernels alone: random bf16 weights (never zeros), a KV
// cache already holding `--context` positions per sequence, batch 1 and 64.
// One decode step is the whole forward pass captured in a CUDA graph:
//
//   embedding -> per layer: RMSNorm, q/k/v GEMMs, q/k RMSNorm, RoPE, KV append,
//   paged attention, o GEMM, residual, RMSNorm, the MoE block, residual ->
//   final RMSNorm, lm_head GEMM, argmax (which feeds the next step's ids)
//
// and is timed over graph replays. The roofline is the bytes a step must
// move (every weight it touches read once: attention, the router, the
// experts the batch routes to, lm_head; the KV cache read; the new KV
// written) over the copy bandwidth (--copy-gbps, from bench/cuda_copy_bench).
//
//   gpu_decode_bench [--layers=4]
//   [--context=512] [--copy-gbps=4200]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/linear.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/rmsnorm.h"

namespace {

using moeserve::bench::Alloc;
using moeserve::bench::Median;

namespace cu = moeserve::cuda;

// Qwen3-30B-A3B (config.json of the released checkpoint).
constexpr int kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 128;
constexpr int kExperts = 128, kTopK = 8, kInter = 768, kVocab = 151936;
constexpr double kRopeTheta = 1e6;
constexpr float kEps = 1e-6f;
constexpr int kBlockSize = 16;  // KV cache block (token rows)

__global__ void FillFloatKernel(float* p, size_t n, float value) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    p[i] = value;
  }
}

uint16_t* RandomBf16(size_t n, uint32_t seed, float scale) {
  uint16_t* p = Alloc<uint16_t>(n);
  moeserve::bench::FillBf16(p, n, seed, scale);
  return p;
}

float* Ones(size_t n) {
  float* p = Alloc<float>(n);
  FillFloatKernel<<<256, 256>>>(p, n, 1.0f);
  CHECK_CUDA(cudaGetLastError());
  return p;
}

// Weights are random: packing random data gives random data, so the packed
// buffers are filled directly.
struct LayerWeights {
  float *attn_norm, *moe_norm, *q_norm, *k_norm;
  uint16_t *q, *k, *v, *o;  // packed [out, in]
  uint16_t *router, *gate_up, *down;
};

}  // namespace

int main(int argc, char** argv) {
  int layers = 4, context = 512;
  double copy_gbps = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--layers=", 9) == 0) layers = std::atoi(argv[i] + 9);
    if (std::strncmp(argv[i], "--context=", 10) == 0) context = std::atoi(argv[i] + 10);
    if (std::strncmp(argv[i], "--copy-gbps=", 12) == 0) copy_gbps = std::atof(argv[i] + 12);
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  if (copy_gbps <= 0) copy_gbps = 4200;  // H200, bench/README.md
  std::printf("device: %s; Qwen3-30B-A3B shapes, %d layers, context %d, copy bandwidth %.0f GB/s\n",
              prop.name, layers, context, copy_gbps);

  const float s_h = 1.0f / std::sqrt(float(kHidden));
  std::vector<LayerWeights> lw(layers);
  uint32_t seed = 1;
  for (auto& w : lw) {
    w.attn_norm = Ones(kHidden);
    w.moe_norm = Ones(kHidden);
    w.q_norm = Ones(kHeadDim);
    w.k_norm = Ones(kHeadDim);
    w.q = RandomBf16(size_t{kHeads} * kHeadDim * kHidden, seed++, s_h);
    w.k = RandomBf16(size_t{kKvHeads} * kHeadDim * kHidden, seed++, s_h);
    w.v = RandomBf16(size_t{kKvHeads} * kHeadDim * kHidden, seed++, s_h);
    w.o = RandomBf16(size_t{kHidden} * kHeads * kHeadDim, seed++,
                     1.0f / std::sqrt(float(kHeads * kHeadDim)));
    w.router = RandomBf16(size_t{kExperts} * kHidden, seed++, s_h);
    w.gate_up = RandomBf16(size_t{kExperts} * 2 * kInter * kHidden, seed++, s_h);
    w.down = RandomBf16(size_t{kExperts} * kHidden * kInter, seed++,
                        1.0f / std::sqrt(float(kInter)));
  }
  uint16_t* embed = RandomBf16(size_t{kVocab} * kHidden, seed++, 1.0f);
  uint16_t* lm_head = RandomBf16(cu::LinearPackedSize(kVocab, kHidden), seed++, s_h);
  float* final_norm = Ones(kHidden);
  std::vector<double> inv_freq(kHeadDim / 2);
  for (int i = 0; i < kHeadDim / 2; ++i) {
    inv_freq[i] = 1.0 / std::pow(kRopeTheta, 2.0 * i / kHeadDim);
  }
  double* d_inv_freq = Alloc<double>(inv_freq.size());
  CHECK_CUDA(cudaMemcpy(d_inv_freq, inv_freq.data(), inv_freq.size() * 8, cudaMemcpyHostToDevice));

  cudaStream_t st;
  CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));

  struct Result {
    int batch;
    double us, tok_s, bytes, roof_us, distinct;
    double stage[6];
  };
  double r_stage[6] = {};
  std::vector<Result> results;
  for (int batch : {1, 64}) {
    // KV cache: each sequence owns ceil((context + 1) / block) blocks,
    // interleaved across sequences so no sequence's blocks are contiguous.
    const int blocks_per_seq = (context + 1 + kBlockSize - 1) / kBlockSize;
    const int num_blocks = blocks_per_seq * batch;
    const size_t pool = static_cast<size_t>(num_blocks) * kBlockSize * kKvHeads * kHeadDim;
    std::vector<uint16_t*> k_pool(layers), v_pool(layers);
    for (int l = 0; l < layers; ++l) {
      k_pool[l] = RandomBf16(pool, 1000 + l, 1.0f);
      v_pool[l] = RandomBf16(pool, 2000 + l, 1.0f);
    }
    std::vector<int32_t> tables(static_cast<size_t>(batch) * blocks_per_seq), positions(batch), slots(batch),
        ids(batch), query_start(batch + 1);
    for (int s = 0; s < batch; ++s) {
      for (int b = 0; b < blocks_per_seq; ++b) tables[s * blocks_per_seq + b] = b * batch + s;
      positions[s] = context;  // the new token's position: `context` tokens precede it
      slots[s] = tables[s * blocks_per_seq + context / kBlockSize] * kBlockSize +
                 context % kBlockSize;
      ids[s] = (s * 7919) % kVocab;
      query_start[s] = s;
    }
    query_start[batch] = batch;
    auto upload = [&](const std::vector<int32_t>& v) {
      int32_t* p = Alloc<int32_t>(v.size());
      CHECK_CUDA(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
      return p;
    };
    int32_t *d_tables = upload(tables), *d_positions = upload(positions),
            *d_slots = upload(slots), *d_ids = upload(ids), *d_qstart = upload(query_start);

    // Activations.
    const int q_dim = kHeads * kHeadDim, kv_dim = kKvHeads * kHeadDim;
    float* h = Alloc<float>(static_cast<size_t>(batch) * kHidden);
    uint16_t* xb = Alloc<uint16_t>(static_cast<size_t>(batch) * std::max(kHidden, q_dim));
    float* q = Alloc<float>(static_cast<size_t>(batch) * q_dim);
    float* k = Alloc<float>(static_cast<size_t>(batch) * kv_dim);
    float* qn = Alloc<float>(static_cast<size_t>(batch) * q_dim);  // after q_norm / k_norm
    float* kn = Alloc<float>(static_cast<size_t>(batch) * kv_dim);
    float* v = Alloc<float>(static_cast<size_t>(batch) * kv_dim);
    float* attn = Alloc<float>(static_cast<size_t>(batch) * q_dim);
    float* proj = Alloc<float>(static_cast<size_t>(batch) * kHidden);
    float* logits = Alloc<float>(static_cast<size_t>(batch) * kVocab);
    float* router_logits = Alloc<float>(static_cast<size_t>(batch) * kExperts);
    float* route_w = Alloc<float>(static_cast<size_t>(batch) * kTopK);
    int32_t* route_ids = Alloc<int32_t>(static_cast<size_t>(batch) * kTopK);
    int32_t* offsets = Alloc<int32_t>(kExperts + 1);
    int32_t* active = Alloc<int32_t>(kExperts);
    int32_t* active_count = Alloc<int32_t>(1);
    int32_t* row_token = Alloc<int32_t>(static_cast<size_t>(batch) * kTopK);
    int32_t* pair_row = Alloc<int32_t>(static_cast<size_t>(batch) * kTopK);
    uint16_t* hh = Alloc<uint16_t>(static_cast<size_t>(batch) * kTopK * kInter);
    float* y = Alloc<float>(static_cast<size_t>(batch) * kTopK * kHidden);
    cu::PagedAttentionShape ashape;
    ashape.num_heads = kHeads;
    ashape.num_kv_heads = kKvHeads;
    ashape.head_dim = kHeadDim;
    ashape.block_size = kBlockSize;
    const int splits =
        cu::PagedAttentionNumSplits(batch, ashape, context + 1, prop.multiProcessorCount);
    float* workspace = Alloc<float>(cu::PagedAttentionWorkspaceFloats(batch, kHeads, kHeadDim, splits));

    // Stage marks (in-graph event nodes) for the breakdown run: 0 start,
    // then per layer: 1 pre-attention (norm, q/k/v, q/k norm, RoPE, append),
    // 2 attention, 3 o + residual + norm, 4 MoE + residual; finally 5
    // final norm, lm_head and argmax.
    constexpr int kStages = 5;
    std::vector<cudaEvent_t> marks(2 + layers * 4 + 1);
    for (auto& m : marks) CHECK_CUDA(cudaEventCreate(&m));
    bool marking = false;
    int mark_index = 0;
    auto mark = [&]() {
      if (marking) {
        CHECK_CUDA(cudaEventRecordWithFlags(marks[mark_index], st, cudaEventRecordExternal));
      }
      ++mark_index;
    };
    auto step = [&]() {
      mark_index = 0;
      mark();
      CHECK_CUDA(cu::EmbeddingGather(embed, kVocab, kHidden, d_ids, batch, h, st));
      for (int l = 0; l < layers; ++l) {
        const LayerWeights& w = lw[l];
        mark();
        CHECK_CUDA(cu::RmsNormToBf16(h, batch, kHidden, w.attn_norm, kEps, nullptr, xb, st));
        CHECK_CUDA(cu::LinearBf16(xb, batch, kHidden, w.q, q_dim, q, st));
        CHECK_CUDA(cu::LinearBf16(xb, batch, kHidden, w.k, kv_dim, k, st));
        CHECK_CUDA(cu::LinearBf16(xb, batch, kHidden, w.v, kv_dim, v, st));
        CHECK_CUDA(cu::RmsNorm(q, int64_t{batch} * kHeads, kHeadDim, w.q_norm, kEps, qn, st));
        CHECK_CUDA(cu::RmsNorm(k, int64_t{batch} * kKvHeads, kHeadDim, w.k_norm, kEps, kn, st));
        CHECK_CUDA(cu::Rope(qn, batch, kHeads, kHeadDim, d_positions, d_inv_freq, st));
        CHECK_CUDA(cu::Rope(kn, batch, kKvHeads, kHeadDim, d_positions, d_inv_freq, st));
        CHECK_CUDA(cu::AppendKv(kn, v, batch, kv_dim, d_slots, k_pool[l], v_pool[l], st));
        mark();
        CHECK_CUDA(cu::PagedAttention(ashape, qn, batch, d_positions, d_qstart, batch, d_tables,
                                      blocks_per_seq, k_pool[l], v_pool[l], splits, workspace,
                                      attn, st));
        mark();
        CHECK_CUDA(cu::FloatToBf16(attn, int64_t{batch} * q_dim, xb, st));
        CHECK_CUDA(cu::LinearBf16(xb, batch, q_dim, w.o, kHidden, proj, st));
        CHECK_CUDA(cu::AddInPlace(h, proj, int64_t{batch} * kHidden, st));
        CHECK_CUDA(cu::RmsNormToBf16(h, batch, kHidden, w.moe_norm, kEps, nullptr, xb, st));
        mark();
        const int rows = batch * kTopK;
        CHECK_CUDA(cu::MoeRouterLogits(xb, batch, kHidden, w.router, kExperts, router_logits, st));
        CHECK_CUDA(cu::MoeTopK(router_logits, batch, kExperts, kTopK, true, route_ids, route_w, st));
        CHECK_CUDA(cu::MoePermute(route_ids, batch, kTopK, kExperts, offsets, active, active_count,
                                  row_token, pair_row, st));
        CHECK_CUDA(cu::MoeGateUp(xb, kHidden, kInter, w.gate_up, kExperts, offsets, active,
                                 active_count, rows, row_token, hh, st));
        CHECK_CUDA(cu::MoeDown(hh, kInter, kHidden, w.down, kExperts, offsets, active,
                               active_count, rows, y, st));
        CHECK_CUDA(cu::MoeCombine(y, route_ids, route_w, pair_row, batch, kTopK, kHidden, proj, st));
        CHECK_CUDA(cu::AddInPlace(h, proj, int64_t{batch} * kHidden, st));
      }
      mark();
      CHECK_CUDA(cu::RmsNormToBf16(h, batch, kHidden, final_norm, kEps, nullptr, xb, st));
      CHECK_CUDA(cu::LinearBf16(xb, batch, kHidden, lm_head, kVocab, logits, st));
      CHECK_CUDA(cu::Argmax(logits, batch, kVocab, d_ids, st));
      mark();
    };
    // Eager once: check it runs and count the experts each layer hits.
    step();
    CHECK_CUDA(cudaStreamSynchronize(st));
    cudaGraph_t g;
    cudaGraphExec_t exec;
    CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    step();
    CHECK_CUDA(cudaStreamEndCapture(st, &g));
    CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
    for (int i = 0; i < 5; ++i) CHECK_CUDA(cudaGraphLaunch(exec, st));
    std::vector<double> us;
    double distinct_sum = 0;
    for (int rep = 0; rep < 30; ++rep) {
      CHECK_CUDA(cudaEventRecord(e0, st));
      CHECK_CUDA(cudaGraphLaunch(exec, st));
      CHECK_CUDA(cudaEventRecord(e1, st));
      CHECK_CUDA(cudaEventSynchronize(e1));
      float ms;
      CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      us.push_back(ms * 1e3);
      int count = 0;  // the last layer's experts: a sample of how many a step reads
      CHECK_CUDA(cudaMemcpy(&count, active_count, 4, cudaMemcpyDeviceToHost));
      distinct_sum += count;
    }
    const double distinct = distinct_sum / 30;
    // Breakdown: the same step with event nodes between the stages.
    marking = true;
    cudaGraph_t gm;
    cudaGraphExec_t exec_m;
    CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    step();
    CHECK_CUDA(cudaStreamEndCapture(st, &gm));
    CHECK_CUDA(cudaGraphInstantiate(&exec_m, gm, 0));
    std::vector<double> stage_us[kStages + 1];
    for (int rep = 0; rep < 12; ++rep) {
      CHECK_CUDA(cudaGraphLaunch(exec_m, st));
      CHECK_CUDA(cudaStreamSynchronize(st));
      if (rep < 2) continue;
      double sum[kStages + 1] = {};
      auto between = [&](int a, int b) {
        float ms;
        CHECK_CUDA(cudaEventElapsedTime(&ms, marks[a], marks[b]));
        return ms * 1e3;
      };
      sum[0] = between(0, 1);  // embedding
      for (int l = 0; l < layers; ++l) {
        for (int j = 0; j < 4; ++j) sum[1 + j] += between(1 + 4 * l + j, 2 + 4 * l + j);
      }
      sum[5] = between(1 + 4 * layers, 2 + 4 * layers);
      for (int j = 0; j <= kStages; ++j) stage_us[j].push_back(sum[j]);
    }
    for (int j = 0; j <= kStages; ++j) r_stage[j] = Median(stage_us[j]);
    CHECK_CUDA(cudaGraphExecDestroy(exec_m));
    CHECK_CUDA(cudaGraphDestroy(gm));
    marking = false;
    std::vector<int32_t> out(batch);
    CHECK_CUDA(cudaMemcpy(out.data(), d_ids, batch * 4, cudaMemcpyDeviceToHost));
    for (int32_t t : out) {
      if (t < 0 || t >= kVocab) {
        std::fprintf(stderr, "batch %d: argmax gave %d\n", batch, t);
        return 1;
      }
    }
    // Bytes a step must move.
    const double attn_w = 2.0 * (double(q_dim) * kHidden * 2 + double(kv_dim) * kHidden * 2);
    const double expert = 2.0 * 3 * kHidden * kInter;
    const double kv_read = 2.0 * 2 * double(batch) * (context + 1) * kv_dim;
    const double per_layer = attn_w + 2.0 * kExperts * kHidden + distinct * expert + kv_read;
    const double bytes = layers * per_layer + 2.0 * double(kVocab) * kHidden +
                         2.0 * batch * kHidden + 4.0 * batch * kVocab;
    Result r;
    r.batch = batch;
    r.us = Median(us);
    r.tok_s = batch / (r.us * 1e-6);
    r.bytes = bytes;
    r.roof_us = bytes / (copy_gbps * 1e9) * 1e6;
    r.distinct = distinct;
    for (int j = 0; j < 6; ++j) r.stage[j] = r_stage[j];
    results.push_back(r);
    std::printf("batch %d: step %.1f us, %.0f tok/s\n", batch, r.us, r.tok_s);
    std::fflush(stdout);
    CHECK_CUDA(cudaGraphExecDestroy(exec));
    CHECK_CUDA(cudaGraphDestroy(g));
  }
  std::printf("\nDecode, Qwen3-30B-A3B shapes cut to %d layers (+ embedding and lm_head), context %d, "
              "%s, roofline at %.0f GB/s\n", layers, context, prop.name, copy_gbps);
  std::printf("| batch | experts hit per layer | MB per step | step us | tok/s | roofline tok/s | of roofline "
              "| us: embed / pre-attn / attention / o+norm / MoE (all layers) / lm_head+argmax |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Result& r : results) {
    std::printf("| %d | %.1f | %.0f | %.1f | %.0f | %.0f | %.0f%% | %.1f / %.1f / %.1f / %.1f / %.1f / %.1f |\n",
                r.batch, r.distinct, r.bytes / 1e6, r.us, r.tok_s, r.batch / (r.roof_us * 1e-6),
                100 * r.roof_us / r.us, r.stage[0], r.stage[1], r.stage[2], r.stage[3],
                r.stage[4], r.stage[5]);
  }
  return 0;
}
