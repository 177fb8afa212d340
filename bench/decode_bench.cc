// Batch-1 decode throughput of the CPU engine on a Qwen3-30B-A3B-shaped
// model (hidden 2048, 128 experts of width 768, top-8, 32 query and 4 KV
// heads of 128, vocabulary 151936) cut to a few layers, with random weights,
// next to a memory-bandwidth probe run in the same process.
//
// Decode at batch 1 is memory-bound: each token reads the attention weights,
// the router, the 8 chosen experts of every layer, the lm_head and the KV
// cache. The benchmark counts those bytes as stored (BF16 by default) and
// reports achieved GB/s as a fraction of the probe's read bandwidth (the
// better of a probe before and one after the decode).
//
//   bazel run -c opt //bench:decode_bench -- --layers 2 --threads 2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/membw.h"
#include "common/cli_flags.h"
#include "engine/transformer.h"
#include "kernels/cpu/gemv.h"
#include "kernels/cpu/linear.h"
#include "model/config.h"
#include "model/weights.h"

namespace moeserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Fills `n` elements of `dtype` with uniform values in [-scale, scale] (or
// around `center` for norms), fast and reproducibly.
std::string RandomBytes(DType dtype, int64_t n, float scale, float center, uint64_t seed) {
  std::string bytes(n * DTypeSize(dtype), '\0');
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < (n + 65535) / 65536; ++chunk) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + chunk * 0xBF58476D1CE4E5B9ull + 1;
    const int64_t end = std::min(n, (chunk + 1) * 65536);
    for (int64_t i = chunk * 65536; i < end; ++i) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      const float u = static_cast<float>(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
      const float v = center + scale * u;
      if (dtype == DType::kF32) {
        std::memcpy(&bytes[i * 4], &v, 4);
      } else {
        const uint16_t h = dtype == DType::kBF16 ? FloatToBF16(v) : FloatToF16(v);
        std::memcpy(&bytes[i * 2], &h, 2);
      }
    }
  }
  return bytes;
}

int Run(int argc, char** argv) {
  int layers = 2, tokens = 32, prompt = 16, threads = 0, repeats = 5;
  std::string dtype_name = "bf16";
  int64_t probe_mib = 1024;
  FlagSet flags("decode_bench",
                "Batch-1 decode tokens/s of the CPU engine on a Qwen3-30B-A3B-shaped model "
                "with random weights, against a memory-bandwidth probe.");
  flags.Int("layers", &layers, "N", "Decoder layers (the real model has 48).");
  flags.Int("tokens", &tokens, "N", "Decode steps per repeat.");
  flags.Int("prompt", &prompt, "N", "Prompt tokens prefilled before decoding.");
  flags.Int("threads", &threads, "N", "Threads for kernels and OpenBLAS (0: all cores).");
  flags.Int("repeats", &repeats, "N", "Decode runs; the median step time is reported.");
  flags.String("dtype", &dtype_name, "bf16|f32", "Weight dtype as stored.");
  flags.Int64("probe-mib", &probe_mib, "MIB", "Buffer size of the bandwidth probe.");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok() || flags.help_requested()) {
    std::cerr << (s.ok() ? "" : std::string(s.message()) + "\n") << flags.Usage();
    return s.ok() ? 0 : 2;
  }
  const DType dtype = dtype_name == "f32" ? DType::kF32 : DType::kBF16;
  kernels::cpu::SetNumThreads(threads);
  threads = kernels::cpu::NumThreads();

  const std::string config_json = absl::StrCat(R"({"architectures": ["Qwen3MoeForCausalLM"],
    "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": )", layers, R"(,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
    "num_experts_per_tok": 8, "norm_topk_prob": true, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000, "max_position_embeddings": 40960, "tie_word_embeddings": false})");
  auto config = ParseModelConfig(config_json, "bench config");
  if (!config.ok()) {
    std::cerr << config.status() << "\n";
    return 1;
  }
  const ModelConfig& c = *config;
  const int64_t h = c.hidden_size, d = c.head_dim, e = c.num_experts, f = c.moe_intermediate_size;
  const int64_t q = c.num_heads * d, kv = c.num_kv_heads * d;

  std::cerr << "building random weights (" << layers << " layers, " << dtype_name << ")...\n";
  auto source = std::make_unique<InMemoryWeightSource>();
  uint64_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, DType dt, float scale,
                 float center = 0.0f) {
    int64_t n = 1;
    for (int64_t x : shape) n *= x;
    source->Add(name, dt, shape, RandomBytes(dt, n, scale, center, seed++));
  };
  add("model.embed_tokens.weight", {c.vocab_size, h}, dtype, 0.05f);
  add("lm_head.weight", {c.vocab_size, h}, dtype, 0.05f);
  add("model.norm.weight", {h}, DType::kF32, 0.1f, 1.0f);
  for (int i = 0; i < layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {h}, DType::kF32, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {h}, DType::kF32, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {q, h}, dtype, 0.03f);
    add(p + "self_attn.k_proj.weight", {kv, h}, dtype, 0.03f);
    add(p + "self_attn.v_proj.weight", {kv, h}, dtype, 0.03f);
    add(p + "self_attn.o_proj.weight", {h, q}, dtype, 0.03f);
    add(p + "self_attn.q_norm.weight", {d}, DType::kF32, 0.1f, 1.0f);
    add(p + "self_attn.k_norm.weight", {d}, DType::kF32, 0.1f, 1.0f);
    add(p + "mlp.gate.weight", {e, h}, DType::kF32, 0.03f);
    add(p + "mlp.experts.gate_up_proj", {e, 2 * f, h}, dtype, 0.03f);
    add(p + "mlp.experts.down_proj", {e, h, f}, dtype, 0.03f);
  }
  LoadOptions options;
  options.prefault = false;
  auto weights = LoadModelWeights(c, std::move(source), options);
  if (!weights.ok()) {
    std::cerr << weights.status() << "\n";
    return 1;
  }
  Transformer model(**weights);

  // Bytes one decode token reads, as stored.
  const double wsize = DTypeSize(dtype);
  const double attn_bytes = (2.0 * q * h + 2.0 * kv * h) * wsize;
  const double router_bytes = e * h * 4.0;
  const double expert_bytes = 3.0 * h * f * wsize;
  const double lm_head_bytes = static_cast<double>(c.vocab_size) * h * wsize;
  const double mid_context = prompt + tokens / 2.0;
  const double kv_bytes = layers * mid_context * kv * 2 * 4.0;
  const double bytes_per_token =
      layers * (attn_bytes + router_bytes + c.top_k * expert_bytes) + lm_head_bytes + kv_bytes;

  std::cerr << "probing memory bandwidth (" << probe_mib << " MiB, " << threads
            << " threads)...\n";
  const bench::BandwidthResult before =
      bench::MeasureBandwidth(static_cast<size_t>(probe_mib) << 20, 5, threads);

  std::mt19937 rng(5);
  std::vector<int32_t> prompt_ids(prompt);
  for (auto& id : prompt_ids) id = static_cast<int32_t>(rng() % c.vocab_size);
  std::vector<double> step_times;
  for (int r = 0; r < repeats + 1; ++r) {
    KvCache cache = model.NewCache(prompt + tokens + 1);
    std::vector<float> logits;
    SequenceChunk pre{prompt_ids, 0, &cache, false};
    if (absl::Status s = model.Forward({&pre, 1}, &logits); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    int32_t token = 0;
    for (int i = 0; i < tokens; ++i) {
      token = static_cast<int32_t>(std::max_element(logits.end() - c.vocab_size, logits.end()) -
                                   (logits.end() - c.vocab_size));
      SequenceChunk step{absl::MakeConstSpan(&token, 1), prompt + i, &cache, false};
      logits.clear();
      const double t0 = Now();
      if (absl::Status s = model.Forward({&step, 1}, &logits); !s.ok()) {
        std::cerr << s << "\n";
        return 1;
      }
      if (r > 0) step_times.push_back(Now() - t0);  // repeat 0 warms the caches
    }
  }
  const double step = Median(step_times);
  const double tok_s = 1.0 / step;
  const double achieved = bytes_per_token * tok_s / 1e9;

  std::cerr << "probing memory bandwidth again (" << probe_mib << " MiB, " << threads
            << " threads)...\n";
  const bench::BandwidthResult after =
      bench::MeasureBandwidth(static_cast<size_t>(probe_mib) << 20, 5, threads);
  // The shared host's bandwidth drifts; the better of the probes before and
  // after the decode keeps the fraction conservative.
  const bench::BandwidthResult bw{std::max(before.read_gbps, after.read_gbps),
                                  std::max(before.copy_gbps, after.copy_gbps)};

  std::printf("engine decode, batch 1, Qwen3-30B-A3B widths, %d layers, %s weights, %d threads, "
              "isa %s\n",
              layers, dtype_name.c_str(), threads,
              kernels::cpu::IsaName(kernels::cpu::DetectIsa()));
  std::printf("  bytes per token         %10.1f MB\n", bytes_per_token / 1e6);
  std::printf("  median step             %10.2f ms\n", step * 1e3);
  std::printf("  tokens/s                %10.2f\n", tok_s);
  std::printf("  achieved                %10.2f GB/s\n", achieved);
  std::printf("  probe read bandwidth    %10.2f GB/s\n", bw.read_gbps);
  std::printf("  probe copy bandwidth    %10.2f GB/s (read+write)\n", bw.copy_gbps);
  std::printf("  fraction of read bw     %10.1f %%\n", 100.0 * achieved / bw.read_gbps);
  std::printf("JSON {\"layers\": %d, \"dtype\": \"%s\", \"threads\": %d, \"tok_s\": %.3f, "
              "\"bytes_per_token\": %.0f, \"achieved_gbps\": %.3f, \"read_gbps\": %.3f, "
              "\"copy_gbps\": %.3f}\n",
              layers, dtype_name.c_str(), threads, tok_s, bytes_per_token, achieved,
              bw.read_gbps, bw.copy_gbps);
  return 0;
}

}  // namespace
}  // namespace moeserve

int main(int argc, char** argv) { return moeserve::Run(argc, argv); }
