// Engine: a worker rank's serving loop. Runs the requests routers placed on
// this rank, stepping in lockstep with the other ranks of the group.
//
//   Engine engine(model, collective, options);
//   engine.set_ring([&](uint64_t period) { /* Wake RPC to every peer */ });
//   std::thread loop([&] { status = engine.Run(); });
//   engine.Submit(sink, item);          // from any thread
//   ...
//   engine.Stop();                      // the whole group leaves Run
//
// One step (ARCHITECTURE.md, "One engine step on every rank"):
//   1. take new requests and aborts from the inbox; pick this step's tokens:
//      a prefill chunk or one decode token per request, within a token budget;
//   2. agree on the step with an all-reduce of (local tokens, stop flag);
//      when every rank is idle, sleep (no spinning) until this rank gets work
//      or a peer rings; a rank that gets work rings every peer;
//   3. the forward pass (the Transformer's ExpertRunner does the MoE
//      all-to-alls; a rank with no tokens still takes part);
//   4. sample, deliver new tokens to each request's sink, free finished
//      requests.
// Sampling and stopping follow engine/generator.cc exactly (same chunking,
// same seeded sampler, stop token included in the output), so a request gives
// the tokens `moeserve run` gives.
//
// Failure: when a collective fails, every request gets an UNAVAILABLE
// terminal and Run returns the error; the group must be formed again.
#ifndef MOESERVE_WORKER_ENGINE_H_
#define MOESERVE_WORKER_ENGINE_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "collective/collective.h"
#include "engine/generator.h"
#include "common/histogram.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/forward_pass.h"

namespace moeserve {

// CLOCK_MONOTONIC in ns (the clock Wake's sent_ns uses).
uint64_t MonotonicNanos();

// A request as the engine sees it: tokenized and checked by the router.
struct WorkItem {
  uint64_t request_id = 0;  // unique per sink
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  bool ignore_eos = false;
  // Lower runs first; equal priorities in arrival order. The latest request
  // in that order is the first preempted.
  int priority = 0;
};

// What one step produced for one request.
struct RequestUpdate {
  uint64_t request_id = 0;
  std::vector<int32_t> tokens;  // new tokens
  // With sampling.logprobs >= 1: one per entry of `tokens`; else empty.
  std::vector<SampleResult> logprobs;
  bool finished = false;        // the terminal update: exactly one per request
  absl::Status status;          // when finished: OK, or why it ended
  FinishReason finish_reason = FinishReason::kLength;
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// Where a request's output goes (one per router stream). Called on the
// engine thread only, once per step with all of that step's updates for the
// sink's requests; must not block for long.
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void Deliver(std::vector<RequestUpdate> updates) = 0;
};

struct EngineOptions {
  int prefill_chunk = 256;      // prompt tokens of one request per step
  int max_step_tokens = 2048;   // tokens of all requests per step (vLLM's max_num_batched_tokens)
  // Requests scheduled together (first come, first served); later ones
  // wait. Beyond max_num_seqs + max_waiting admitted requests, Submit
  // answers RESOURCE_EXHAUSTED.
  int max_num_seqs = 256;
  int max_waiting = 1024;
  // The paged KV cache: blocks of block_size positions, as many as fit in
  // kv_cache_bytes (or exactly kv_cache_blocks when > 0). Memory is
  // committed as blocks are first used.
  int block_size = 16;
  int64_t kv_cache_bytes = int64_t{1} << 30;
  int64_t kv_cache_blocks = 0;
  // Share the KV blocks of common prompt prefixes between requests.
  bool prefix_caching = true;
  // Testing: NaN in every block handed out (KvBlockPool::set_poison_on_allocate).
  bool poison_kv = false;
};

struct EngineLoad {
  int active_requests = 0;
  int64_t pending_tokens = 0;  // prompt tokens to prefill + tokens to generate
  int64_t kv_tokens = 0;       // KV positions held
  bool operator==(const EngineLoad& o) const {
    return active_requests == o.active_requests && pending_tokens == o.pending_tokens &&
           kv_tokens == o.kv_tokens;
  }
};

struct EngineStats {
  uint64_t steps = 0;  // steps in which the group had work
  double step_seconds = 0;
  uint64_t generated_tokens = 0;
  int active_requests = 0;  // admitted and not yet retired, at the time of the call
  int running_requests = 0;  // holding KV blocks (as of the last step)
  int kv_blocks_total = 0;
  int kv_block_size = 0;
  int kv_blocks_used = 0;    // held by some request (as of the last step)
  // Requests whose blocks were taken back to make room (they recompute).
  uint64_t preemptions = 0;
  // Prefix cache: prompt tokens looked up when requests started, and those
  // found cached (vLLM's prefix_cache_queries / _hits).
  uint64_t prefix_queries = 0, prefix_hits = 0;
  int waiting_requests = 0;  // admitted, not holding KV blocks (as of the last step)
  uint64_t prompt_tokens = 0;  // prompt tokens of requests that started
  // vLLM's per-request phases, observed as each ends: queue (arrival to
  // first scheduled), prefill (first scheduled to first token), decode
  // (first token to the last, for requests that ended OK).
  Histogram queue_time{Histogram::LatencyBuckets()};
  Histogram prefill_time{Histogram::LatencyBuckets()};
  Histogram decode_time{Histogram::LatencyBuckets()};
  // Tokens this rank fed per step, and the time one step spent in the
  // MoE all-to-alls (with set_all_to_all_probe).
  Histogram iteration_tokens{Histogram::TokenCountBuckets()};
  Histogram all_to_all_step_seconds{Histogram::TokenGapBuckets()};
  // Idle periods ended by a peer's ring, and ring-to-wake latency.
  uint64_t wakes_by_peer = 0;
  double wake_latency_sum = 0, wake_latency_max = 0;
};

class Engine {
 public:
  // `model` and `collective` must outlive the engine; the model's expert
  // exchange must use the same collective. When the model keeps its KV
  // values on a device (kv_on_host() false), the pool here holds only block
  // ids, and kv_cache_blocks must give the device pool's size.
  Engine(ForwardPass& model, Collective& collective, const EngineOptions& options);
  ~Engine();

  // Thread-safe. INVALID_ARGUMENT (nothing queued) for an empty prompt, ids
  // outside the vocabulary, negative max_tokens, or a prompt + max_tokens
  // beyond the model's context; UNAVAILABLE once Run has returned.
  absl::Status Submit(std::shared_ptr<RequestSink> sink, WorkItem item);
  // Thread-safe. The request ends with a CANCELLED terminal at the next step
  // (nothing happens if it already ended).
  void Abort(const RequestSink* sink, uint64_t request_id);
  // Thread-safe. The sink's stream is gone: free its requests, deliver
  // nothing more to it.
  void DropSink(const RequestSink* sink);
  // Thread-safe. A peer rang the doorbell for idle period `period` at
  // `sent_ns` (CLOCK_MONOTONIC; 0 if unknown).
  void Wake(uint64_t period, uint64_t sent_ns = 0);
  // Thread-safe. Every rank of the group leaves Run at the next step; open
  // requests end with UNAVAILABLE. Run returns OK on this rank and
  // UNAVAILABLE ("a peer left the group") on the others.
  void Stop();
  // Thread-safe. The group is broken (a peer was lost): at the next step
  // (or at once when idle) every open request ends with UNAVAILABLE naming
  // `why`, and Run returns `why` without entering the collective again.
  void Interrupt(absl::Status why);
  // Thread-safe. From now on Submit answers UNAVAILABLE; admitted requests
  // go on. Returns once none is left or `timeout` passed (then true / false).
  bool Drain(std::chrono::milliseconds timeout);

  // Rings every peer (set before Run; not needed at world size 1).
  void set_ring(std::function<void(uint64_t period)> ring) { ring_ = std::move(ring); }
  // Called on the engine thread when the load changed: at once when the
  // number of requests changed, else at most every 50 ms.
  void set_load_listener(std::function<void(const EngineLoad&)> f) { on_load_ = std::move(f); }
  // Seconds spent in all-to-alls so far (the ExpertParallelRunner's), read
  // around each step's forward pass.
  void set_all_to_all_probe(std::function<double()> f) { a2a_probe_ = std::move(f); }

  // The loop, on the calling thread: OK after Stop, else the collective's
  // error.
  absl::Status Run();

  EngineStats stats() const;

 private:
  struct Request;
  struct Chunk {
    Request* request;
    int begin, count;  // positions of the request's tokens fed this step
  };

  void DrainInbox();
  // Drops finished requests from requests_ and from the admitted count.
  void Retire();
  std::vector<Chunk> Schedule(std::vector<SequenceChunk>* chunks);
  void WaitForWork(uint64_t period);
  // Queues r's terminal update (with any undelivered tokens) and marks it done.
  void Finish(Request& r, absl::Status status, FinishReason reason = FinishReason::kLength);
  void FailAll(const absl::Status& status);
  void DeliverAll();
  void ReportLoad();
  // Releases r's blocks and forgets what they held (r computes from scratch).
  static void DropKv(Request& r);
  // Takes back r's blocks; r recomputes its tokens when it runs again.
  void Preempt(Request& r);
  // Shares the cached blocks of r's longest cached prefix (leaving at least
  // its last token to compute).
  void MatchPrefix(Request& r);
  // Publishes r's newly filled blocks to the prefix cache.
  void PublishBlocks(Request& r);

  ForwardPass& model_;
  Collective& collective_;
  EngineOptions options_;
  std::function<void(uint64_t)> ring_;
  std::function<void(const EngineLoad&)> on_load_;
  std::function<double()> a2a_probe_;

  // Inbox, guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Submission {
    std::shared_ptr<RequestSink> sink;
    WorkItem item;
    uint64_t arrival_ns = 0;
  };
  std::deque<Submission> submits_;
  std::vector<std::pair<const RequestSink*, uint64_t>> aborts_;
  std::vector<const RequestSink*> dropped_;
  bool stop_ = false;
  absl::Status interrupted_;  // mu_; not OK once Interrupt was called
  bool exited_ = false;  // Run returned (or is failing everything): refuse work
  bool draining_ = false;  // Drain was called: refuse new work
  int64_t admitted_ = 0;  // submitted and not yet retired (inbox + requests_)
  uint64_t woken_period_ = 0;
  uint64_t woken_sent_ns_ = 0;
  EngineStats stats_;

  // Engine thread only.
  std::shared_ptr<KvBlockPool> pool_;
  uint64_t schedule_round_ = 0;
  std::vector<std::unique_ptr<Request>> requests_;  // by (priority, arrival)
  std::vector<std::pair<std::shared_ptr<RequestSink>, std::vector<RequestUpdate>>> outbox_;
  uint64_t idle_period_ = 0;
  EngineLoad last_load_;
  uint64_t last_load_ns_ = 0;
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_ENGINE_H_
