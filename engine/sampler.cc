#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// NaN ranks below everything, so that orderings stay strict weak orders.
float RankKey(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }
double RankKey(double v) { return std::isnan(v) ? -kInf : v; }

template <typename T>
absl::Status OutOfRange(const char* field, const char* rule, T value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", rule, ", got ", value));
}

// out[i] = v[i] - log(sum_j exp(v[j])), in double.
void LogSoftmax(const float* v, int n, double* out) {
  double max = -kInf;
  for (int i = 0; i < n; ++i) max = std::max(max, static_cast<double>(RankKey(v[i])));
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp(v[i] - max);
  const double lse = max + std::log(sum);
  for (int i = 0; i < n; ++i) out[i] = v[i] - lse;
}

}  // namespace

absl::Status CheckSamplingParams(const SamplingParams& p) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return OutOfRange("temperature", "a finite number >= 0", p.temperature);
  }
  if (p.top_k < 0) return OutOfRange("top_k", ">= 0 (0 turns it off)", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return OutOfRange("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return OutOfRange("min_p", "in [0, 1]", p.min_p);
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f)) {
    return OutOfRange("repetition_penalty", "a finite number > 0", p.repetition_penalty);
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return OutOfRange("presence_penalty", "in [-2, 2]", p.presence_penalty);
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return OutOfRange("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  if (p.logprobs < 0 || p.logprobs > kMaxLogprobs) {
    return OutOfRange("logprobs", absl::StrCat("in [0, ", kMaxLogprobs, "]").c_str(), p.logprobs);
  }
  if (p.logprobs_mode != LogprobsMode::kRaw && p.logprobs_mode != LogprobsMode::kProcessed) {
    return OutOfRange("logprobs_mode", "kRaw or kProcessed", static_cast<int>(p.logprobs_mode));
  }
  return absl::OkStatus();
}

int32_t Argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params),
      penalties_(params.repetition_penalty != 1.0f || params.presence_penalty != 0.0f ||
                 params.frequency_penalty != 0.0f),
      rng_(params.seed) {}

void Sampler::SetPrompt(absl::Span<const int32_t> prompt) {
  // Only repetition_penalty looks at the prompt.
  if (params_.repetition_penalty == 1.0f) return;
  for (auto it = seen_.begin(); it != seen_.end();) {
    it->second.in_prompt = false;
    if (it->second.output_count == 0) {
      seen_.erase(it++);
    } else {
      ++it;
    }
  }
  for (int32_t token : prompt) seen_[token].in_prompt = true;
}

void Sampler::Accept(int32_t token) {
  if (penalties_) ++seen_[token].output_count;
}

const float* Sampler::Penalise(const float* logits, int vocab) {
  if (!penalties_ || seen_.empty()) return logits;
  penalised_.assign(logits, logits + vocab);
  const double repetition = params_.repetition_penalty;
  const double frequency = params_.frequency_penalty;
  const double presence = params_.presence_penalty;
  // Each id on its own, so the map's iteration order cannot matter.
  for (const auto& [token, seen] : seen_) {
    if (token < 0 || token >= vocab) continue;
    double v = logits[token];
    // Every id in seen_ is in the prompt or the output.
    if (repetition != 1.0) v = v > 0.0 ? v / repetition : v * repetition;
    if (seen.output_count > 0) {
      v -= frequency * seen.output_count;
      v -= presence;
    }
    penalised_[token] = static_cast<float>(v);
  }
  return penalised_.data();
}

bool Sampler::PlainSampling() const {
  return !penalties_ && params_.top_k <= 0 && params_.top_p >= 1.0f &&
         params_.min_p <= 0.0f && params_.logprobs == 0;
}

double Sampler::TakeDraw() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::Choose(const float* x, int vocab) {
  if (params_.temperature <= 0.0f) return Argmax(x, vocab);
  const double u = TakeDraw();
  // With no truncation on, the original sampler's arithmetic operation for
  // operation ((x - max) in float, then times 1/T in double), and the same
  // draw at the same point of the generator's sequence.
  const double inv_t = 1.0 / params_.temperature;
  const float max = *std::max_element(x, x + vocab);
  probs_.resize(vocab);
  for (int i = 0; i < vocab; ++i) probs_[i] = std::exp((x[i] - max) * inv_t);
  if (params_.top_k > 0 && params_.top_k < vocab) TopK(x, vocab);
  if (params_.top_p < 1.0f) TopP(x, vocab);
  if (params_.min_p > 0.0f) {
    // The largest weight is exp(0) = 1, so p_v >= min_p * p_max is w_v >= min_p.
    const double min_w = std::min(1.0, static_cast<double>(params_.min_p));
    for (int i = 0; i < vocab; ++i) {
      if (probs_[i] < min_w) probs_[i] = 0.0;
    }
  }
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += probs_[i];
  const double threshold = u * sum;
  double acc = 0.0;
  for (int i = 0; i < vocab; ++i) {
    acc += probs_[i];
    if (threshold < acc) return i;
  }
  // Rounding left u at the very top: the last token with non-zero mass.
  for (int i = vocab - 1; i > 0; --i) {
    if (probs_[i] > 0.0) return i;
  }
  return 0;
}

void Sampler::TopK(const float* x, int vocab) {
  const int k = params_.top_k;
  keys_.resize(vocab);
  for (int i = 0; i < vocab; ++i) keys_[i] = RankKey(x[i]);
  std::nth_element(keys_.begin(), keys_.begin() + (k - 1), keys_.end(), std::greater<float>());
  const float kth = keys_[k - 1];
  for (int i = 0; i < vocab; ++i) {
    if (!(x[i] >= kth)) probs_[i] = 0.0;
  }
}

void Sampler::TopP(const float* x, int vocab) {
  // The mass: what top_k kept. Zero-weight tokens add none and can never be
  // drawn; the others have finite x.
  double total = 0.0;
  int live = 0;
  for (int i = 0; i < vocab; ++i) {
    total += probs_[i];
    live += probs_[i] > 0.0;
  }
  if (live <= 1) return;
  const double target = static_cast<double>(params_.top_p) * total;
  // A token of weight w has at most `live` tokens (itself included) from it
  // to the end of the order, all of weight <= w; so when live * w is less
  // than total - target, the mass before it exceeds the target and it is
  // cut. With 1e-9 * total to spare, far more than the rounding of any sum
  // here, dropping those now decides nothing differently, and leaves few
  // candidates when the distribution is peaked.
  const double cut_below = (total - target - 1e-9 * total) / live;
  order_.clear();
  for (int i = 0; i < vocab; ++i) {
    if (probs_[i] > 0.0 && probs_[i] < cut_below) probs_[i] = 0.0;
    if (probs_[i] > 0.0) order_.push_back(i);
  }
  const int n = static_cast<int>(order_.size());
  if (n <= 1) return;
  const auto before = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  // The kept set is the shortest prefix of that order whose mass reaches the
  // target. Sorting all n would cost O(n log n) (~10 ms at 152k), so first
  // narrow down where the prefix ends, in O(n): split [lo, hi) at its middle
  // element (nth_element), keep the half the end lies in. Afterwards
  // [0, hi) holds the hi first tokens of the order, and the end is in it
  // unless rounding (these masses are summed in another order) says otherwise.
  double mass_before_lo = 0.0;
  int lo = 0, hi = n;
  while (hi - lo > 64) {
    const int mid = lo + (hi - lo) / 2;
    std::nth_element(order_.begin() + lo, order_.begin() + mid, order_.begin() + hi, before);
    double mass = mass_before_lo;
    for (int j = lo; j < mid; ++j) mass += probs_[order_[j]];
    if (mass >= target) {
      hi = mid;
    } else {
      mass_before_lo = mass;
      lo = mid;
    }
  }
  if (hi < n) {
    // The next token in the order too, so that the walk sees the end at hi.
    std::nth_element(order_.begin() + hi, order_.begin() + hi, order_.end(), before);
    ++hi;
  }
  std::sort(order_.begin(), order_.begin() + hi, before);
  // The exact walk: keep each token while the mass before it (summed in
  // order, in double) is < the target. Past hi (only after rounding), sort
  // further in rounds twice as long.
  double cum = 0.0;
  int i = 0;
  for (int sorted = hi;;) {
    for (; i < sorted; ++i) {
      if (i > 0 && cum >= target) {
        for (int j = i; j < n; ++j) probs_[order_[j]] = 0.0;
        return;
      }
      cum += probs_[order_[i]];
    }
    if (sorted == n) return;
    const int m = std::min(n, std::max(64, 2 * sorted));
    std::partial_sort(order_.begin() + sorted, order_.begin() + m, order_.end(), before);
    sorted = m;
  }
}

void Sampler::ComputeLogprobs(const float* logits, const float* x, int vocab) {
  logprobs_.resize(vocab);
  if (params_.logprobs_mode == LogprobsMode::kRaw) {
    LogSoftmax(logits, vocab, logprobs_.data());
    return;
  }
  if (params_.temperature <= 0.0f) {
    LogSoftmax(x, vocab, logprobs_.data());
    return;
  }
  // Over what Choose kept (probs_ > 0), with the scaled logits in double.
  const double inv_t = 1.0 / params_.temperature;
  double max = -kInf;
  for (int i = 0; i < vocab; ++i) {
    if (probs_[i] > 0.0) max = std::max(max, static_cast<double>(x[i]));
  }
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) {
    if (probs_[i] > 0.0) sum += std::exp((x[i] - max) * inv_t);
  }
  const double log_sum = std::log(sum);
  for (int i = 0; i < vocab; ++i) {
    logprobs_[i] = probs_[i] > 0.0 ? (x[i] - max) * inv_t - log_sum : -kInf;
  }
}

int32_t Sampler::Sample(const float* logits, int vocab) {
  return Choose(Penalise(logits, vocab), vocab);
}

SampleResult Sampler::SampleWithLogprobs(const float* logits, int vocab) {
  const float* x = Penalise(logits, vocab);
  SampleResult result;
  result.token = Choose(x, vocab);
  ComputeLogprobs(logits, x, vocab);
  result.logprob = logprobs_[result.token];
  const int n = std::clamp(params_.logprobs, 0, vocab);
  if (n == 0) return result;
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  const double* lp = logprobs_.data();
  std::partial_sort(order_.begin(), order_.begin() + n, order_.end(), [lp](int32_t a, int32_t b) {
    const double ka = RankKey(lp[a]), kb = RankKey(lp[b]);
    return ka > kb || (ka == kb && a < b);
  });
  result.top.reserve(n);
  for (int j = 0; j < n; ++j) result.top.push_back({order_[j], lp[order_[j]]});
  return result;
}

}  // namespace moeserve
