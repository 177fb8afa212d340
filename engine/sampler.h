// Sampler: picks the next token of one request from the model's logits, with
// the sampling controls of vLLM / the OpenAI API, and reports log-probs.
//
//   SamplingParams p;
//   p.temperature = 0.7f;  p.top_p = 0.9f;  p.seed = 42;  p.logprobs = 5;
//   if (absl::Status s = CheckSamplingParams(p); !s.ok()) return s;
//   Sampler sampler(p);
//   sampler.SetPrompt(prompt_ids);                  // for repetition_penalty
//   SampleResult r = sampler.SampleWithLogprobs(logits, vocab);
//   sampler.Accept(r.token);                        // the token joins the output
//
// What a step computes, in order (vLLM's order):
//   1. penalties on the model's logits l, for each token id v that has been
//      seen (every other logit is left exactly as it is):
//        repetition_penalty r, if v is in the prompt or the output so far:
//          l > 0 ? l / r : l * r                          (HF / vLLM)
//        then, with c = how many times v is in the OUTPUT so far (c > 0):
//          l - frequency_penalty * c - presence_penalty   (OpenAI / vLLM)
//      Each penalised logit is computed in double and rounded once to float:
//      the processed logits x are float32, as the model's (and vLLM's) are.
//   2. temperature <= 0: greedy, argmax of x (ties: the lowest id, as
//      torch.argmax). No random draw is taken. Steps 3-5 are skipped.
//   3. temperature T > 0: weights w_v = exp((x_v - max x) / T), so the
//      largest has weight exactly 1. Then the truncations, each on what the
//      previous one kept (a removed token gets weight 0):
//        top_k k:  keep x_v >= the k-th largest x (ties with it are all
//                  kept, as vLLM and HF do);
//        top_p p:  order the kept tokens by x descending, ties by id
//                  ascending; keep each token while the weight of those
//                  before it (summed in double, in that order) is < p times
//                  the kept total. The first is always kept;
//        min_p m:  keep w_v >= m (i.e. p_v >= m * p_max of what is kept).
//   4. one uniform draw u in [0, 1): the top 53 bits of the request's own
//      std::mt19937_64 (seeded by `seed`) times 2^-53. Exactly one draw per
//      sampled step, whatever the logits, so draw n is always the n-th output
//      of the generator.
//   5. the token: the first id v (in id order) whose cumulative kept weight
//      exceeds u * (total kept weight).
// With only temperature and seed set this is bit for bit the sampler moeserve
// always had (and kernels/cuda/ops.h SampleFromLogits mirrors).
//
// Log-probs (SampleWithLogprobs), by `logprobs_mode`:
//   kRaw (default, vLLM v1's default "raw_logprobs"): log-softmax of the
//     model's logits as given: before penalties, temperature and truncation.
//     What the model thinks, the same whatever the sampling params are.
//   kProcessed (vLLM's "processed_logprobs"): of the distribution the token
//     was drawn from: after penalties, temperature and truncation, with -inf
//     for the tokens removed. Greedy steps: log-softmax of the penalised
//     logits (no temperature).
// Both are computed in double. `top` lists the `logprobs` best tokens by
// log-prob descending, ties by id ascending; the sampled token's own
// log-prob is in `logprob` whether it is among them or not.
//
// Order-sensitive differences from other engines, on purpose:
//   - min_p comes after top_p (HF's order; vLLM v0's). vLLM v1 applies min_p
//     before top_k/top_p; the two differ only when top_p and min_p are both
//     set (top_p's mass is then taken over what min_p kept).
//   - temperature in (0, 1e-5) samples (vLLM treats it as greedy); the
//     weights are computed in double and stay exact enough.
//
// Determinism: a Sampler depends on nothing but its params, its prompt, the
// tokens accepted and the logits it is given. No global state, no threads.
// Not thread-safe: one Sampler per request, used by one thread at a time.
//
// Cost per step: O(vocab) (exp over the vocabulary, as before); with
// penalties O(vocab) more (a copy) plus O(distinct tokens seen); top_k
// O(vocab); top_p O(vocab + n log n) for the n tokens it keeps; log-probs
// O(vocab log logprobs). Scratch buffers are reused, nothing else allocates
// per step but the result's `top`. At vocab 152k on the 2-core development
// VM: greedy 0.6 ms, temperature 1.2 ms, + top_k 2.5, + top_p 0.9 1.4 ms
// (peaked) to 5 ms (flat: thousands kept), + 20 log-probs 2.2 ms.
#ifndef MOESERVE_ENGINE_SAMPLER_H_
#define MOESERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"

namespace moeserve {

// The most alternatives SampleWithLogprobs may be asked for (vLLM's default
// max_logprobs, OpenAI's top_logprobs limit).
inline constexpr int kMaxLogprobs = 20;

enum class LogprobsMode {
  kRaw,        // log-softmax of the model's logits (vLLM v1 default)
  kProcessed,  // of the distribution sampled from (see the top of the file)
};

// Every field's default turns its feature off. The first two fields stay
// first: callers build {temperature, seed}.
struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy
  uint64_t seed = 0;
  int32_t top_k = 0;                 // 0: off
  float top_p = 1.0f;                // 1: off; (0, 1]
  float min_p = 0.0f;                // 0: off; [0, 1]
  float repetition_penalty = 1.0f;   // 1: off; > 0
  float presence_penalty = 0.0f;     // 0: off; [-2, 2]
  float frequency_penalty = 0.0f;    // 0: off; [-2, 2]
  int32_t logprobs = 0;              // alternatives to report; [0, kMaxLogprobs]
  LogprobsMode logprobs_mode = LogprobsMode::kRaw;
};

// OK, or INVALID_ARGUMENT naming the first bad field and its value, e.g.
// "top_p must be in (0, 1], got 0". NaN is out of every range.
absl::Status CheckSamplingParams(const SamplingParams& params);

struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0.0;
};

struct SampleResult {
  int32_t token = 0;
  double logprob = 0.0;            // of `token`, per params.logprobs_mode
  std::vector<TokenLogprob> top;   // min(params.logprobs, vocab) entries, best first
};

class Sampler {
 public:
  // `params` should pass CheckSamplingParams. Outside it nothing is undefined
  // behaviour, but the results are only what falls out: any temperature <= 0
  // is greedy (as it always was; callers rely on it), top_k <= 0 and
  // top_p >= 1 are off, top_p <= 0 keeps one token, min_p is capped at 1 and
  // logprobs at the vocabulary.
  explicit Sampler(const SamplingParams& params);

  // The prompt's token ids, for repetition_penalty (the other penalties look
  // at the output only). Replaces any prompt given before; the output so far
  // is kept. Ids outside [0, vocab) are ignored at sampling time.
  void SetPrompt(absl::Span<const int32_t> prompt);

  // Appends `token` to the output so far. Sampling never does this itself:
  // the caller decides what the output is (it calls Accept once for each
  // token it emits, sampled here or not). The order of calls does not matter,
  // only the counts. A no-op when no penalty is on.
  void Accept(int32_t token);

  // The next token (see the top of the file). Does not change the history.
  // `logits` holds `vocab` >= 1 floats.
  int32_t Sample(const float* logits, int vocab);

  // Sample, plus log-probs: the same token, the same random draw.
  SampleResult SampleWithLogprobs(const float* logits, int vocab);

  const SamplingParams& params() const { return params_; }

  // Whether this request's sampling is only greedy or plain temperature (no
  // penalty, truncation or log-probs): what a device can pick by itself
  // (ForwardPass::ForwardSampled) given the draw from TakeDraw.
  bool PlainSampling() const;
  // The uniform draw a temperature step takes, as Sample would take it
  // (one per sampled step; greedy takes none and this must not be called).
  double TakeDraw();

 private:
  struct Seen {
    bool in_prompt = false;
    int32_t output_count = 0;
  };

  // Step 1: `logits`, or penalised_ holding the penalised copy.
  const float* Penalise(const float* logits, int vocab);
  // Steps 2-5 over the processed logits x. Leaves the kept weights in probs_.
  int32_t Choose(const float* x, int vocab);
  void TopK(const float* x, int vocab);
  void TopP(const float* x, int vocab);
  // logprobs_ = the reported log-probs of every token.
  void ComputeLogprobs(const float* logits, const float* x, int vocab);

  SamplingParams params_;
  bool penalties_ = false;
  std::mt19937_64 rng_;
  absl::flat_hash_map<int32_t, Seen> seen_;  // only while penalties_

  // Scratch, O(vocab), reused from step to step.
  std::vector<double> probs_;
  std::vector<float> penalised_;
  std::vector<float> keys_;
  std::vector<int32_t> order_;
  std::vector<double> logprobs_;
};

// The first index of the largest logit (torch.argmax's tie rule); a NaN is
// never larger than anything, and index 0 wins when nothing is larger.
int32_t Argmax(const float* logits, int vocab);

}  // namespace moeserve

#endif  // MOESERVE_ENGINE_SAMPLER_H_
