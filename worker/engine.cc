#include "worker/engine.h"

#include <algorithm>
#include <time.h>

#include <chrono>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "engine/kv_cache.h"

namespace moeserve {

uint64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + ts.tv_nsec;
}

struct Engine::Request {
  Request(std::shared_ptr<RequestSink> s, WorkItem w, std::shared_ptr<KvBlockPool> pool)
      : sink(std::move(s)), item(std::move(w)), cache(std::move(pool)), sampler(item.sampling) {
    sampler.SetPrompt(item.prompt);
    seq = item.prompt;
  }

  std::shared_ptr<RequestSink> sink;
  WorkItem item;
  std::vector<int32_t> stops;
  KvCache cache;
  Sampler sampler;
  std::vector<int32_t> seq;  // prompt, then the generated tokens
  int fed = 0;               // positions of seq in the cache
  bool running = false;      // holds KV blocks and a seat among max_num_seqs
  uint64_t preempted_at = 0;  // the schedule round that last preempted it (0: none)
  int published = 0;         // leading blocks published to the prefix cache
  uint64_t last_hash = 0;    // the hash of block published - 1 (0: none)
  std::vector<int32_t> generated;
  std::vector<int32_t> fresh;  // generated this step, not yet delivered
  std::vector<SampleResult> fresh_logprobs;  // fresh's, when logprobs >= 1
  bool done = false;
  uint64_t arrival_ns = 0, scheduled_ns = 0, first_token_ns = 0;

  int prompt_size() const { return static_cast<int>(item.prompt.size()); }
  int size() const { return static_cast<int>(seq.size()); }
};

Engine::Engine(ForwardPass& model, Collective& collective, const EngineOptions& options)
    : model_(model), collective_(collective), options_(options) {
  const ModelConfig& c = model.config();
  const int64_t kv_dim = int64_t{c.num_kv_heads} * c.head_dim;
  options_.block_size = std::max(1, options_.block_size);
  int64_t blocks = options_.kv_cache_blocks > 0
                       ? options_.kv_cache_blocks
                       : KvBlockPool::BlocksForBytes(c.num_layers, kv_dim, options_.block_size,
                                                     options_.kv_cache_bytes);
  blocks = std::min<int64_t>(blocks, std::numeric_limits<int32_t>::max());
  pool_ = std::make_shared<KvBlockPool>(c.num_layers, kv_dim, options_.block_size,
                                        static_cast<int>(blocks), model.kv_on_host());
  pool_->set_poison_on_allocate(options_.poison_kv);
  stats_.kv_blocks_total = pool_->num_blocks();
  stats_.kv_block_size = options_.block_size;
}

Engine::~Engine() = default;

absl::Status Engine::Submit(std::shared_ptr<RequestSink> sink, WorkItem item) {
  MOE_RETURN_IF_ERROR(CheckGenerateRequest(model_.config(), item.prompt, item.max_tokens));
  MOE_RETURN_IF_ERROR(CheckSamplingParams(item.sampling));
  // A request that could not fit even with the whole cache to itself would
  // wait forever: refuse it now.
  const int64_t positions = static_cast<int64_t>(item.prompt.size()) + item.max_tokens;
  const int64_t needed = (positions + options_.block_size - 1) / options_.block_size;
  if (needed > pool_->num_blocks()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt (", item.prompt.size(), " tokens) plus max_tokens (", item.max_tokens,
        ") needs ", needed, " KV-cache blocks of ", options_.block_size,
        " positions; this worker's whole cache holds ", pool_->num_blocks(),
        " (--kv-cache-bytes)"));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (exited_) return absl::UnavailableError("this worker's engine has stopped");
    if (draining_) return absl::UnavailableError("this worker is shutting down");
    const int64_t limit = int64_t{options_.max_num_seqs} + options_.max_waiting;
    if (admitted_ >= limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this worker is full: ", admitted_, " requests admitted (--max-num-seqs ",
          options_.max_num_seqs, " running + --max-waiting ", options_.max_waiting,
          " waiting); retry later"));
    }
    ++admitted_;
    submits_.push_back({std::move(sink), std::move(item), MonotonicNanos()});
  }
  cv_.notify_one();
  return absl::OkStatus();
}

void Engine::Abort(const RequestSink* sink, uint64_t request_id) {
  std::lock_guard<std::mutex> l(mu_);
  aborts_.emplace_back(sink, request_id);
}

void Engine::DropSink(const RequestSink* sink) {
  std::lock_guard<std::mutex> l(mu_);
  dropped_.push_back(sink);
}

void Engine::Wake(uint64_t period, uint64_t sent_ns) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (period > woken_period_) {
      woken_period_ = period;
      woken_sent_ns_ = sent_ns;
    }
  }
  cv_.notify_one();
}

bool Engine::Drain(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  {
    std::lock_guard<std::mutex> l(mu_);
    draining_ = true;
  }
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (admitted_ == 0 || exited_) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_one();
}

void Engine::Interrupt(absl::Status why) {
  if (why.ok()) why = absl::UnavailableError("the group was interrupted");
  {
    std::lock_guard<std::mutex> l(mu_);
    if (interrupted_.ok()) interrupted_ = std::move(why);
  }
  cv_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  EngineStats s = stats_;
  // Admitted and not yet retired, now (the rest is as of the last step).
  s.active_requests = static_cast<int>(admitted_);
  return s;
}

void Engine::Finish(Request& r, absl::Status status, FinishReason reason) {
  RequestUpdate u;
  u.request_id = r.item.request_id;
  u.tokens = std::move(r.fresh);
  r.fresh.clear();
  u.logprobs = std::move(r.fresh_logprobs);
  r.fresh_logprobs.clear();
  u.finished = true;
  u.status = std::move(status);
  u.finish_reason = reason;
  u.prompt_tokens = r.prompt_size();
  u.completion_tokens = static_cast<int>(r.generated.size());
  if (u.status.ok() && r.first_token_ns != 0) {
    std::lock_guard<std::mutex> l(mu_);
    stats_.decode_time.Observe((MonotonicNanos() - r.first_token_ns) * 1e-9);
  }
  std::vector<RequestUpdate> one;
  one.push_back(std::move(u));
  outbox_.push_back({r.sink, std::move(one)});
  r.done = true;
}

// Moves the inbox into the request list, applying aborts and dropped sinks.
void Engine::DrainInbox() {
  std::deque<Submission> submits;
  std::vector<std::pair<const RequestSink*, uint64_t>> aborts;
  std::vector<const RequestSink*> dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    submits.swap(submits_);
    aborts.swap(aborts_);
    dropped.swap(dropped_);
  }
  const ModelConfig& c = model_.config();
  for (Submission& s : submits) {
    auto r = std::make_unique<Request>(std::move(s.sink), std::move(s.item), pool_);
    r->arrival_ns = s.arrival_ns;
    r->stops = r->item.stop_token_ids;
    if (!r->item.ignore_eos) {
      r->stops.insert(r->stops.end(), c.eos_token_ids.begin(), c.eos_token_ids.end());
    }
    // After every request of the same or a lower priority value.
    const int priority = r->item.priority;
    auto at = std::upper_bound(requests_.begin(), requests_.end(), priority,
                               [](int p, const auto& q) { return p < q->item.priority; });
    requests_.insert(at, std::move(r));
  }
  for (const RequestSink* sink : dropped) {
    for (auto& r : requests_) {
      if (r->sink.get() == sink) r->done = true;  // nobody to tell
    }
  }
  for (const auto& [sink, id] : aborts) {
    for (auto& r : requests_) {
      if (!r->done && r->sink.get() == sink && r->item.request_id == id) {
        Finish(*r, absl::CancelledError("the request was cancelled"));
      }
    }
  }
  // max_tokens == 0: nothing to compute (as Generate).
  for (auto& r : requests_) {
    if (!r->done && r->item.max_tokens == 0) Finish(*r, absl::OkStatus(), FinishReason::kLength);
  }
  Retire();
}

void Engine::Retire() {
  const size_t before = requests_.size();
  requests_.erase(std::remove_if(requests_.begin(), requests_.end(),
                                 [](const auto& r) { return r->done; }),
                  requests_.end());
  const size_t removed = before - requests_.size();
  if (removed == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  admitted_ -= static_cast<int64_t>(removed);
}

void Engine::DropKv(Request& r) {
  r.cache.Clear();
  r.fed = 0;
  r.published = 0;
  r.last_hash = 0;
}

void Engine::Preempt(Request& r) {
  r.preempted_at = schedule_round_;
  DropKv(r);
  r.running = false;
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.preemptions;
}

void Engine::MatchPrefix(Request& r) {
  const int bs = options_.block_size;
  const absl::Span<const int32_t> seq(r.seq);
  uint64_t parent = 0;
  int matched = 0;
  // Leave the last token to compute: its logits give the next token.
  while ((matched + 1) * bs <= r.size() - 1) {
    const absl::Span<const int32_t> tokens = seq.subspan(matched * bs, bs);
    const uint64_t h = KvBlockPool::HashBlock(parent, tokens);
    const int32_t block = pool_->Find(h, parent, tokens);
    if (block < 0) break;
    r.cache.AppendShared(block);
    parent = h;
    ++matched;
  }
  r.fed = matched * bs;
  r.published = matched;
  r.last_hash = parent;
}

void Engine::PublishBlocks(Request& r) {
  const int bs = options_.block_size;
  const absl::Span<const int32_t> seq(r.seq);
  while ((r.published + 1) * bs <= r.fed) {
    const absl::Span<const int32_t> tokens = seq.subspan(r.published * bs, bs);
    const uint64_t h = KvBlockPool::HashBlock(r.last_hash, tokens);
    pool_->Publish(r.cache.blocks()[r.published], h, r.last_hash, tokens);
    r.last_hash = h;
    ++r.published;
  }
}

// vLLM's scheduler on our paged cache. Requests are ordered by priority, then
// arrival. Running requests first, in that order: each gets its next tokens
// (one to decode, or a prefill chunk) within the step's budget, taking KV
// blocks as needed; when none are free, the last running request in the
// order is preempted (its blocks taken back; it recomputes later), itself if
// it is the last. Then waiting requests start, in order, while seats, budget
// and free blocks last; the first that does not fit stops the rest (no
// overtaking, so none starves). The first request can always take every
// block, so the engine never deadlocks, and Submit refuses requests larger
// than the whole cache.
std::vector<Engine::Chunk> Engine::Schedule(std::vector<SequenceChunk>* chunks) {
  std::vector<Chunk> picked;
  ++schedule_round_;
  int budget = options_.max_step_tokens;
  const int chunk_limit = std::max(1, options_.prefill_chunk);
  auto want = [&](const Request& r) { return std::min({r.size() - r.fed, chunk_limit, budget}); };
  for (size_t i = 0; i < requests_.size() && budget > 0; ++i) {
    Request& r = *requests_[i];
    if (!r.running) continue;
    const int n = want(r);
    bool self_preempted = false;
    while (!r.cache.Reserve(r.fed + n)) {
      size_t victim = requests_.size();
      while (victim-- > i + 1 && !requests_[victim]->running) {
      }
      if (victim <= i) {
        Preempt(r);
        self_preempted = true;
        break;
      }
      Preempt(*requests_[victim]);
    }
    if (self_preempted) break;  // everything after r is preempted too
    picked.push_back({&r, r.fed, n});
    budget -= n;
  }
  int running = 0;
  for (const auto& r : requests_) running += r->running ? 1 : 0;

  for (const auto& rp : requests_) {
    if (budget == 0 || running >= std::max(1, options_.max_num_seqs)) break;
    Request& r = *rp;
    if (r.running) continue;
    // Preempted this round to make room: it waits for a later one (and,
    // first come first served, so does everyone after it).
    if (r.preempted_at == schedule_round_) break;
    if (options_.prefix_caching) MatchPrefix(r);
    const int n = want(r);
    if (!r.cache.Reserve(r.fed + n)) {
      DropKv(r);  // wait, holding nothing, until blocks free up
      break;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (options_.prefix_caching) {
        stats_.prefix_queries += r.size();
        stats_.prefix_hits += r.fed;
      }
      if (r.scheduled_ns == 0) {  // first start (not a resume after preemption)
        r.scheduled_ns = MonotonicNanos();
        stats_.queue_time.Observe((r.scheduled_ns - r.arrival_ns) * 1e-9);
        stats_.prompt_tokens += r.prompt_size();
      }
    }
    r.running = true;
    ++running;
    picked.push_back({&r, r.fed, n});
    budget -= n;
  }

  chunks->clear();
  for (const Chunk& ch : picked) {
    Request& r = *ch.request;
    chunks->push_back(
        {absl::MakeConstSpan(r.seq).subspan(ch.begin, ch.count), ch.begin, &r.cache, false});
  }
  return picked;
}

void Engine::WaitForWork(uint64_t period) {
  bool local;
  {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] {
      return !submits_.empty() || stop_ || !interrupted_.ok() || woken_period_ >= period;
    });
    local = !submits_.empty() || stop_;
    if (!local && woken_period_ == period && woken_sent_ns_ != 0) {
      const double latency = (MonotonicNanos() - woken_sent_ns_) * 1e-9;
      ++stats_.wakes_by_peer;
      stats_.wake_latency_sum += latency;
      stats_.wake_latency_max = std::max(stats_.wake_latency_max, latency);
    }
  }
  // This rank ends the idle period: wake the others so all enter the next
  // step's all-reduce.
  if (local && collective_.world_size() > 1 && ring_) ring_(period);
}

void Engine::DeliverAll() {
  // One Deliver per sink per step.
  std::vector<std::pair<std::shared_ptr<RequestSink>, std::vector<RequestUpdate>>> merged;
  for (auto& [sink, updates] : outbox_) {
    auto it = std::find_if(merged.begin(), merged.end(),
                           [&](const auto& m) { return m.first == sink; });
    if (it == merged.end()) {
      merged.emplace_back(sink, std::move(updates));
    } else {
      for (auto& u : updates) it->second.push_back(std::move(u));
    }
  }
  outbox_.clear();
  for (auto& [sink, updates] : merged) sink->Deliver(std::move(updates));
}

void Engine::FailAll(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> l(mu_);
    exited_ = true;
  }
  DrainInbox();
  for (auto& r : requests_) Finish(*r, status);
  Retire();
  DeliverAll();
  ReportLoad();
}

void Engine::ReportLoad() {
  EngineLoad load;
  load.active_requests = static_cast<int>(requests_.size());
  for (const auto& r : requests_) {
    load.pending_tokens += (r->size() - r->fed) +
                           (r->item.max_tokens - static_cast<int64_t>(r->generated.size()));
  }
  load.kv_tokens = int64_t{pool_->num_used()} * options_.block_size;
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.active_requests = load.active_requests;
    stats_.running_requests = 0;
    for (const auto& r : requests_) stats_.running_requests += r->running ? 1 : 0;
    stats_.waiting_requests = load.active_requests - stats_.running_requests;
    stats_.kv_blocks_used = pool_->num_used();
  }
  if (load == last_load_) return;
  // Pending tokens shrink every step; a report per step would double the
  // messages per token. Report at once when requests come or go (what
  // placement mostly needs), else at most every 50 ms.
  const uint64_t now = MonotonicNanos();
  if (load.active_requests == last_load_.active_requests &&
      now - last_load_ns_ < 50'000'000) {
    return;
  }
  last_load_ = load;
  last_load_ns_ = now;
  if (on_load_) on_load_(load);
}

absl::Status Engine::Run() {
  const ModelConfig& c = model_.config();
  std::vector<SequenceChunk> chunks;
  std::vector<float> logits;
  std::vector<RowSampling> rows;  // stays empty unless the model samples
  std::vector<int32_t> device_tokens;
  while (true) {
    DrainInbox();
    DeliverAll();
    const std::vector<Chunk> picked = Schedule(&chunks);
    int64_t local_tokens = 0;
    for (const SequenceChunk& ch : chunks) local_tokens += static_cast<int64_t>(ch.tokens.size());
    bool stop;
    absl::Status broken;
    {
      std::lock_guard<std::mutex> l(mu_);
      stop = stop_;
      broken = interrupted_;
    }
    if (!broken.ok()) {
      FailAll(absl::UnavailableError(absl::StrCat("worker group failed: ", broken.message())));
      return broken;
    }
    int64_t agree[2] = {local_tokens, stop ? 1 : 0};
    if (absl::Status s = collective_.AllReduceSum(agree, 2); !s.ok()) {
      FailAll(absl::UnavailableError(absl::StrCat("worker group failed: ", s.message())));
      return s;
    }
    if (agree[1] > 0) {
      FailAll(absl::UnavailableError("the worker group is shutting down"));
      return stop ? absl::OkStatus() : absl::UnavailableError("a peer left the group");
    }
    if (agree[0] == 0) {
      ReportLoad();
      WaitForWork(++idle_period_);
      continue;
    }

    const auto t0 = std::chrono::steady_clock::now();
    const double a2a0 = a2a_probe_ ? a2a_probe_() : 0.0;
    // Where each row's token is picked: on the device when the forward pass
    // can and the request's sampling is plain (its draw taken here, in the
    // order Sample would take it), else on the host from the row's logits.
    const float* host_logits = nullptr;
    absl::Status step;
    if (model_.samples_on_device()) {
      rows.assign(picked.size(), RowSampling{});
      for (size_t i = 0; i < picked.size(); ++i) {
        Request& r = *picked[i].request;
        if (r.fed + picked[i].count < r.size()) continue;  // kSkip
        if (r.sampler.PlainSampling()) {
          rows[i].where = RowSampling::kDevice;
          rows[i].temperature = r.item.sampling.temperature;
          if (rows[i].temperature > 0.0f) rows[i].uniform = r.sampler.TakeDraw();
        } else {
          rows[i].where = RowSampling::kHost;
        }
      }
      step = model_.ForwardSampled(chunks, rows, &device_tokens, &host_logits);
    } else {
      logits.clear();
      step = model_.Forward(chunks, &logits);
      host_logits = logits.data();
    }
    if (!step.ok()) {
      FailAll(absl::UnavailableError(absl::StrCat("worker step failed: ", step.message())));
      return step;
    }
    size_t host_row = 0;
    uint64_t generated = 0;
    for (size_t i = 0; i < picked.size(); ++i) {
      Request& r = *picked[i].request;
      r.fed += picked[i].count;
      if (options_.prefix_caching) PublishBlocks(r);
      if (r.fed < r.size()) continue;  // more prompt (or recomputation) to go
      // Log-probs only when asked for: they cost a sort of the vocabulary.
      int32_t next;
      const float* row = nullptr;
      if (rows.empty()) {
        row = host_logits + i * static_cast<size_t>(c.vocab_size);
      } else if (rows[i].where == RowSampling::kHost) {
        row = host_logits + host_row++ * static_cast<size_t>(c.vocab_size);
      }
      if (row == nullptr) {
        next = device_tokens[i];
      } else if (r.item.sampling.logprobs > 0) {
        SampleResult sr = r.sampler.SampleWithLogprobs(row, c.vocab_size);
        next = sr.token;
        r.fresh_logprobs.push_back(std::move(sr));
      } else {
        next = r.sampler.Sample(row, c.vocab_size);
      }
      r.sampler.Accept(next);
      if (r.first_token_ns == 0) {
        r.first_token_ns = MonotonicNanos();
        std::lock_guard<std::mutex> l(mu_);
        stats_.prefill_time.Observe((r.first_token_ns - r.scheduled_ns) * 1e-9);
      }
      r.seq.push_back(next);
      r.generated.push_back(next);
      r.fresh.push_back(next);
      ++generated;
      if (std::find(r.stops.begin(), r.stops.end(), next) != r.stops.end()) {
        Finish(r, absl::OkStatus(), FinishReason::kStop);
      } else if (static_cast<int>(r.generated.size()) >= r.item.max_tokens) {
        Finish(r, absl::OkStatus(), FinishReason::kLength);
      } else {
        std::vector<RequestUpdate> one(1);
        one[0].request_id = r.item.request_id;
        one[0].tokens = std::move(r.fresh);
        r.fresh.clear();
        one[0].logprobs = std::move(r.fresh_logprobs);
        r.fresh_logprobs.clear();
        outbox_.push_back({r.sink, std::move(one)});
      }
    }
    Retire();
    DeliverAll();
    ReportLoad();
    const double dt =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::lock_guard<std::mutex> l(mu_);
    stats_.iteration_tokens.Observe(static_cast<double>(local_tokens));
    if (a2a_probe_) stats_.all_to_all_step_seconds.Observe(a2a_probe_() - a2a0);
    ++stats_.steps;
    stats_.step_seconds += dt;
    stats_.generated_tokens += generated;
  }
}

}  // namespace moeserve
