// The GPU MoE layer (kernels/cuda/moe.h) at Qwen3-30B-A3B's dimensions:
// hidden 2048, 128 experts of width 768, top-8 with renormalization, bf16
// weights (1.21 GB of experts per layer). For batch 1, 8, 64 and 256 it
// times the whole layer (router logits, top-k, permutation, gate/up + SiLU,
// down, combine) as one CUDA graph replay, and reports the bytes the layer
// must move (each weight of every expert hit read once, the activations and
// intermediates written and read once), the achieved bandwidth, and that as
// a share of the device's copy bandwidth (--copy-gbps, from
// bench/cuda_copy_bench; measured here with cudaMemcpy when absent).
//
// Inputs rotate over 16 random sets per batch size so that the experts hit
// change from replay to replay and L2 (50-60 MB) cannot hold them; random
// weights and inputs, never zeros. A stage breakdown (events between
// launches, no graph) follows for diagnosis.
//
//   bazel build -c opt //bench:moe_layer_bench   (then on the GPU machine)
//   moe_layer_bench [--copy-gbps=4300]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda/moe.h"

namespace {

using moeserve::bench::Alloc;
using moeserve::bench::Median;

constexpr int kHidden = 2048, kInter = 768, kExperts = 128, kTopK = 8;
constexpr int kSets = 16;
constexpr int kVariants = moeserve::cuda::kMoeGemmVariants;

void Fill(uint16_t* p, size_t n, uint32_t seed, float scale) {
  moeserve::bench::FillBf16(p, n, seed, scale);
}

struct Layer {
  uint16_t* router;
  uint16_t* gate_up;
  uint16_t* down;
};

struct Scratch {
  float *logits, *weights, *y, *out;
  int32_t *ids, *offsets, *active, *active_count, *row_token, *pair_row;
  uint16_t* h;
  explicit Scratch(int n) {
    logits = Alloc<float>(size_t(n) * kExperts);
    weights = Alloc<float>(size_t(n) * kTopK);
    y = Alloc<float>(size_t(n) * kTopK * kHidden);
    out = Alloc<float>(size_t(n) * kHidden);
    ids = Alloc<int32_t>(size_t(n) * kTopK);
    offsets = Alloc<int32_t>(kExperts + 1);
    active = Alloc<int32_t>(kExperts);
    active_count = Alloc<int32_t>(1);
    row_token = Alloc<int32_t>(size_t(n) * kTopK);
    pair_row = Alloc<int32_t>(size_t(n) * kTopK);
    h = Alloc<uint16_t>(size_t(n) * kTopK * kInter);
  }
};

// The six launches of one layer; stage_events (7 events) brackets each when
// given.
// gate_variant, down_variant: the GEMM tilings (0: the library's
// choice). stage_events are recorded as external event nodes when captured.
void Enqueue(const Layer& l, const uint16_t* x, int n, Scratch& s, cudaStream_t st,
             int gate_variant = 0, int down_variant = 0, cudaEvent_t* stage_events = nullptr) {
  const int rows = n * kTopK;
  auto mark = [&](int i) {
    if (stage_events) {
      CHECK_CUDA(cudaEventRecordWithFlags(stage_events[i], st, cudaEventRecordExternal));
    }
  };
  mark(0);
  CHECK_CUDA(moeserve::cuda::MoeRouterLogits(x, n, kHidden, l.router, kExperts, s.logits, st));
  mark(1);
  CHECK_CUDA(moeserve::cuda::MoeTopK(s.logits, n, kExperts, kTopK, true, s.ids, s.weights, st));
  mark(2);
  CHECK_CUDA(moeserve::cuda::MoePermute(s.ids, n, kTopK, kExperts, s.offsets, s.active,
                                        s.active_count, s.row_token, s.pair_row, st));
  mark(3);
  CHECK_CUDA(moeserve::cuda::MoeGateUp(x, kHidden, kInter, l.gate_up, kExperts, s.offsets,
                                       s.active, s.active_count, rows, s.row_token, s.h, st,
                                       gate_variant));
  mark(4);
  CHECK_CUDA(moeserve::cuda::MoeDown(s.h, kInter, kHidden, l.down, kExperts, s.offsets,
                                     s.active, s.active_count, rows, s.y, st, down_variant));
  mark(5);
  CHECK_CUDA(moeserve::cuda::MoeCombine(s.y, s.ids, s.weights, s.pair_row, n, kTopK, kHidden,
                                        s.out, st));
  mark(6);
}

double MeasureCopyGbps() {
  const size_t bytes = size_t{1} << 30;
  uint16_t* a = Alloc<uint16_t>(bytes / 2);
  uint16_t* b = Alloc<uint16_t>(bytes / 2);
  Fill(a, bytes / 2, 7, 1.0f);
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  std::vector<double> gbps;
  for (int i = 0; i < 12; ++i) {
    CHECK_CUDA(cudaEventRecord(e0));
    CHECK_CUDA(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaEventRecord(e1));
    CHECK_CUDA(cudaEventSynchronize(e1));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) gbps.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
  }
  cudaFree(a);
  cudaFree(b);
  return Median(gbps);
}

}  // namespace

int main(int argc, char** argv) {
  double copy_gbps = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--copy-gbps=", 12) == 0) copy_gbps = std::atof(argv[i] + 12);
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  if (copy_gbps <= 0) {
    copy_gbps = MeasureCopyGbps();
    std::printf("copy bandwidth (cudaMemcpy D2D, read + write): %.0f GB/s\n", copy_gbps);
  }

  const size_t expert_values = size_t{3} * kHidden * kInter;  // gate, up, down
  const double expert_bytes = 2.0 * expert_values;
  Layer layer;
  layer.router = Alloc<uint16_t>(size_t{kExperts} * kHidden);
  layer.gate_up = Alloc<uint16_t>(size_t{kExperts} * 2 * kInter * kHidden);
  layer.down = Alloc<uint16_t>(size_t{kExperts} * kHidden * kInter);
  // Random data is random in any order: the packed router and experts are
  // filled directly (E is a multiple of 16: no padding rows).
  Fill(layer.router, size_t{kExperts} * kHidden, 1, 1.0f / std::sqrt(float(kHidden)));
  // Random data is random in any order: no need to pack it.
  Fill(layer.gate_up, size_t{kExperts} * 2 * kInter * kHidden, 2, 1.0f / std::sqrt(float(kHidden)));
  Fill(layer.down, size_t{kExperts} * kHidden * kInter, 3, 1.0f / std::sqrt(float(kInter)));
  std::printf("experts: %d x %.1f MB = %.2f GB bf16\n", kExperts, expert_bytes / 1e6,
              kExperts * expert_bytes / 1e9);

  cudaStream_t st;
  CHECK_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1, stage[7];
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  for (auto& e : stage) CHECK_CUDA(cudaEventCreate(&e));

  struct Row {
    int n;
    double distinct, bytes;
    double us, gbps, share;            // the library's default tiling
    double best_us, best_share;        // the fastest tiling per GEMM
    int best_gate, best_down;
    double stage_us[6];                // default tiling
    double gate_us[kVariants + 1], down_us[kVariants + 1];

  };
  // Median us of whole-layer graph replays over the input sets.
  auto time_graphs = [&](const uint16_t* xs, int n, Scratch& s, int gv, int dv) {
    std::vector<cudaGraphExec_t> graphs(kSets);
    for (int i = 0; i < kSets; ++i) {
      cudaGraph_t g;
      CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      Enqueue(layer, xs + static_cast<size_t>(i) * n * kHidden, n, s, st, gv, dv);
      CHECK_CUDA(cudaStreamEndCapture(st, &g));
      CHECK_CUDA(cudaGraphInstantiate(&graphs[i], g, 0));
      CHECK_CUDA(cudaGraphDestroy(g));
    }
    for (int w = 0; w < 3; ++w) {
      for (auto& g : graphs) CHECK_CUDA(cudaGraphLaunch(g, st));
    }
    std::vector<double> us;
    for (int rep = 0; rep < 12; ++rep) {
      for (int i = 0; i < kSets; ++i) {
        CHECK_CUDA(cudaEventRecord(e0, st));
        CHECK_CUDA(cudaGraphLaunch(graphs[i], st));
        CHECK_CUDA(cudaEventRecord(e1, st));
        CHECK_CUDA(cudaEventSynchronize(e1));
        float ms;
        CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        us.push_back(ms * 1e3);
      }
    }
    for (auto& g : graphs) CHECK_CUDA(cudaGraphExecDestroy(g));
    return Median(us);
  };
  // Median us of each stage: graphs with external event nodes between the
  // stages, so no host launch gap lands inside a stage.
  auto time_stages = [&](const uint16_t* xs, int n, Scratch& s, int variant, double* out) {
    std::vector<double> stage_us[6];
    std::vector<cudaGraphExec_t> graphs(kSets);
    for (int i = 0; i < kSets; ++i) {
      cudaGraph_t g;
      CHECK_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
      Enqueue(layer, xs + static_cast<size_t>(i) * n * kHidden, n, s, st, variant, variant, stage);
      CHECK_CUDA(cudaStreamEndCapture(st, &g));
      CHECK_CUDA(cudaGraphInstantiate(&graphs[i], g, 0));
      CHECK_CUDA(cudaGraphDestroy(g));
    }
    for (int rep = 0; rep < 4; ++rep) {
      for (int i = 0; i < kSets; ++i) {
        CHECK_CUDA(cudaGraphLaunch(graphs[i], st));
        CHECK_CUDA(cudaStreamSynchronize(st));
        if (rep == 0) continue;  // warm-up
        for (int j = 0; j < 6; ++j) {
          float ms;
          CHECK_CUDA(cudaEventElapsedTime(&ms, stage[j], stage[j + 1]));
          stage_us[j].push_back(ms * 1e3);
        }
      }
    }
    for (auto& g : graphs) CHECK_CUDA(cudaGraphExecDestroy(g));
    for (int j = 0; j < 6; ++j) out[j] = Median(stage_us[j]);
  };

  std::vector<Row> rows;
  for (int n : {1, 8, 64, 256}) {
    uint16_t* xs = Alloc<uint16_t>(size_t{kSets} * n * kHidden);
    Fill(xs, size_t{kSets} * n * kHidden, 100 + n, 1.0f);
    Scratch s(n);
    Row r{};
    r.n = n;
    for (int i = 0; i < kSets; ++i) {
      Enqueue(layer, xs + static_cast<size_t>(i) * n * kHidden, n, s, st);  // eager: count experts
      CHECK_CUDA(cudaStreamSynchronize(st));
      int count = 0;
      CHECK_CUDA(cudaMemcpy(&count, s.active_count, 4, cudaMemcpyDeviceToHost));
      r.distinct += double(count) / kSets;
    }
    // Sanity: the output is finite.
    std::vector<float> out(static_cast<size_t>(n) * kHidden);
    CHECK_CUDA(cudaMemcpy(out.data(), s.out, out.size() * 4, cudaMemcpyDeviceToHost));
    for (float v : out) {
      if (!std::isfinite(v)) {
        std::fprintf(stderr, "batch %d: non-finite output\n", n);
        return 1;
      }
    }
    // Bytes the layer must move: the experts hit, the router, x read (twice:
    // router and gate/up), logits, h and y written and read, out written.
    const double nk = double(n) * kTopK;
    r.bytes = r.distinct * expert_bytes + 2.0 * kExperts * kHidden + 2.0 * 2 * n * kHidden +
              2.0 * 4 * n * kExperts + 2.0 * 2 * nk * kInter + 2.0 * 4 * nk * kHidden +
              4.0 * n * kHidden;
    time_stages(xs, n, s, 0, r.stage_us);

    r.best_gate = r.best_down = 1;
    for (int v = 1; v <= kVariants; ++v) {
      double st_us[6];
      time_stages(xs, n, s, v, st_us);
      r.gate_us[v] = st_us[3];
      r.down_us[v] = st_us[4];
      if (r.gate_us[v] < r.gate_us[r.best_gate]) r.best_gate = v;
      if (r.down_us[v] < r.down_us[r.best_down]) r.best_down = v;
    }
    r.us = time_graphs(xs, n, s, 0, 0);
    r.gbps = r.bytes / (r.us * 1e-6) / 1e9;
    r.share = r.gbps / copy_gbps;
    r.best_us = time_graphs(xs, n, s, r.best_gate, r.best_down);
    r.best_share = r.bytes / (r.best_us * 1e-6) / 1e9 / copy_gbps;
    rows.push_back(r);
    cudaFree(xs);
    std::printf("batch %d done: %.1f us (default tiling), %.1f us (best: %d, %d)\n", n, r.us,
                r.best_us, r.best_gate, r.best_down);
    std::fflush(stdout);
  }

  std::printf("\nGEMM tilings, median us gate_up / down (in-graph events):\n");
  std::printf("| variant | batch 1 | batch 8 | batch 64 | batch 256 |\n| --- | --- | --- | --- | --- |\n");
  for (int v = 1; v <= kVariants; ++v) {
    std::printf("| %d: %s |", v, moeserve::cuda::MoeGemmVariantName(v));
    for (const Row& r : rows) std::printf(" %.1f / %.1f |", r.gate_us[v], r.down_us[v]);
    std::printf("\n");
  }
  std::printf("\nMoE layer, Qwen3-30B-A3B dims (H=%d, E=%d, I=%d, top-%d), %s, copy bandwidth "
              "%.0f GB/s; median of %d graph replays over %d input sets\n",
              kHidden, kExperts, kInter, kTopK, prop.name, copy_gbps, 12 * kSets, kSets);
  std::printf("| batch | experts hit | MB moved | us | GB/s | of copy bw | target | best tilings: us, "
              "share | stages us (logits/topk/permute/gate_up/down/combine) |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Row& r : rows) {
    const double target = r.n >= 64 ? 0.75 : (r.n == 1 ? 0.30 : 0.0);
    std::printf("| %d | %.1f | %.1f | %.1f | %.0f | %.0f%% | %s | %.1f, %.0f%% (%d, %d) | "
                "%.1f / %.1f / %.1f / %.1f / %.1f / %.1f |\n",
                r.n, r.distinct, r.bytes / 1e6, r.us, r.gbps, 100 * r.share,
                target == 0 ? "-" : (r.share >= target ? "met" : "MISSED"), r.best_us,
                100 * r.best_share, r.best_gate, r.best_down, r.stage_us[0], r.stage_us[1],
                r.stage_us[2], r.stage_us[3], r.stage_us[4], r.stage_us[5]);
  }
  return 0;
}
