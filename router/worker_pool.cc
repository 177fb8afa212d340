#include "router/worker_pool.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace router {

using internal::v1::Terminal;

namespace {

Terminal Unavailable(const std::string& message) {
  Terminal t;
  t.set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  t.set_message(message);
  return t;
}

}  // namespace

struct WorkerPool::Waiting {
  PlacedRequest placed;  // placed.submit is set
  std::chrono::steady_clock::time_point deadline;
  std::string why;  // the first failure
};

WorkerPool::WorkerPool(StateCallback on_change) : WorkerPool(std::move(on_change), Options()) {}

WorkerPool::WorkerPool(StateCallback on_change, Options options)
    : on_change_(std::move(on_change)), options_(options) {
  if (options_.retry_timeout.count() > 0) retry_thread_ = std::thread([this] { RetryLoop(); });
}

WorkerPool::~WorkerPool() { Shutdown(); }

void WorkerPool::AddWorker(std::unique_ptr<WorkerConnection> connection) {
  auto slot = std::make_shared<WorkerSlot>();
  slot->pool = this;
  slot->address = connection->address();
  slot->connection = std::move(connection);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& s : slots_) {
      if (s->address == slot->address) return;
    }
    slots_.push_back(slot);
  }
  NotifyChange();
  slot->connection->Start(slot.get());
}

void WorkerPool::RemoveWorker(const std::string& address) {
  std::shared_ptr<WorkerSlot> slot;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = slots_.begin(); it != slots_.end(); ++it) {
      if ((*it)->address == address) {
        slot = *it;
        slots_.erase(it);
        break;
      }
    }
  }
  if (!slot) return;
  // Joins the reader thread: no listener call runs after this.
  slot->connection->Shutdown();
  FailAll(slot.get(), absl::StrCat("worker ", address, " was removed from the group"),
          /*retry=*/true);
  NotifyChange();
}

std::vector<std::string> WorkerPool::addresses() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& s : slots_) out.push_back(s->address);
  return out;
}

bool WorkerPool::connected(const std::string& address) const {
  absl::MutexLock lock(&mu_);
  for (const auto& s : slots_) {
    if (s->address == address) return s->session != 0;
  }
  return false;
}

void WorkerPool::Shutdown() {
  std::vector<std::shared_ptr<WorkerSlot>> slots;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Waiting>> waiting;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    slots = slots_;
    waiting.swap(waiting_);
  }
  retry_cv_.SignalAll();
  if (retry_thread_.joinable() && retry_thread_.get_id() != std::this_thread::get_id()) {
    retry_thread_.join();
  }
  for (const auto& slot : slots) slot->connection->Shutdown();
  for (const auto& slot : slots) FailAll(slot.get(), "the router is shutting down", false);
  const Terminal terminal = Unavailable("the router is shutting down");
  const TokenLogprobsList none;
  for (auto& [id, w] : waiting) w->placed.sink->OnOutput({}, &terminal, none);
}

std::shared_ptr<WorkerSlot> WorkerPool::PlaceLocked(uint64_t request_id, PlacedRequest&& placed,
                                                    size_t prompt_size, uint32_t max_tokens,
                                                    uint64_t* session) {
  std::vector<WorkerLoad> loads;
  loads.reserve(slots_.size());
  for (const auto& s : slots_) loads.push_back(s->load);
  const int i = PickWorker(loads);
  if (i < 0) return nullptr;
  std::shared_ptr<WorkerSlot> slot = slots_[i];
  *session = slot->session;
  slot->requests.emplace(request_id, std::move(placed));
  slot->load.placed_since_report += RequestWork(prompt_size, max_tokens);
  return slot;
}

absl::StatusOr<WorkerPool::Ticket> WorkerPool::Submit(internal::v1::Submit submit,
                                                      std::shared_ptr<RequestSink> sink) {
  Ticket ticket;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    ticket.request_id = next_request_id_;
    submit.set_request_id(ticket.request_id);
    PlacedRequest placed;
    placed.sink = std::move(sink);
    if (options_.retry_timeout.count() > 0) {
      placed.submit = std::make_shared<const internal::v1::Submit>(submit);
    }
    ticket.slot = PlaceLocked(ticket.request_id, std::move(placed), submit.prompt_size(),
                              submit.max_tokens(), &session);
    if (!ticket.slot) {
      return absl::UnavailableError("no worker is connected and accepting requests");
    }
    ++next_request_id_;
    // Written under mu_, so that an Abort (which finds the request under
    // mu_) always reaches the worker after its Submit. A failed write means
    // the session has ended and its OnDisconnected is on its way (the slot
    // still holds the session): the request stays, and the loss retries it
    // (it has no token) or ends it, as for every request on that stream.
    ticket.slot->connection->Submit(session, submit).IgnoreError();
  }
  return ticket;
}

void WorkerPool::Abort(const Ticket& ticket) {
  if (!ticket.slot) return;
  uint64_t session = 0;
  std::shared_ptr<WorkerSlot> slot;
  {
    absl::MutexLock lock(&mu_);
    if (ticket.slot->requests.erase(ticket.request_id) > 0) {
      slot = ticket.slot;
    } else if (waiting_.erase(ticket.request_id) > 0) {
      return;  // waiting for the group: nothing runs anywhere
    } else {
      // Retried: placed again, maybe on another worker.
      for (const auto& s : slots_) {
        if (s->requests.erase(ticket.request_id) > 0) {
          slot = s;
          break;
        }
      }
      if (!slot) return;
    }
    session = slot->session;
  }
  slot->connection->Abort(session, ticket.request_id);
}

WorkerPool::State WorkerPool::state() const {
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

WorkerPool::State WorkerPool::StateLocked() const {
  State s;
  s.workers = static_cast<int>(slots_.size());
  for (const auto& slot : slots_) s.connected += slot->session != 0;
  s.world_size = world_size_;
  return s;
}

bool WorkerPool::RetriableLocked(const PlacedRequest& placed) const {
  return placed.submit != nullptr && !shutting_down_ && placed.attempt < options_.max_attempts;
}

void WorkerPool::WaitLocked(uint64_t request_id, PlacedRequest&& placed, std::string why) {
  auto w = std::make_unique<Waiting>();
  w->placed = std::move(placed);
  w->deadline = std::chrono::steady_clock::now() + options_.retry_timeout;
  w->why = std::move(why);
  waiting_[request_id] = std::move(w);
}

size_t WorkerPool::active_requests() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& slot : slots_) n += slot->requests.size();
  return n + waiting_.size();
}

uint64_t WorkerPool::retried_requests() const {
  absl::MutexLock lock(&mu_);
  return retried_;
}

void WorkerPool::OnConnected(WorkerSlot* slot, uint64_t session, uint64_t /*epoch*/,
                             const internal::v1::Welcome& welcome) {
  {
    absl::MutexLock lock(&mu_);
    slot->session = session;
    slot->rank = welcome.rank();
    slot->load = WorkerLoad();
    slot->load.connected = true;
    world_size_ = static_cast<int>(welcome.world_size());
  }
  retry_cv_.SignalAll();  // waiting requests may go now
  NotifyChange();
}

void WorkerPool::OnTokens(WorkerSlot* slot, uint64_t session,
                          const internal::v1::TokenBatch& batch) {
  struct Delivery {
    std::shared_ptr<RequestSink> sink;
    const internal::v1::RequestTokens* item;
  };
  // Small batches are the common case; avoid a heap allocation for them.
  absl::InlinedVector<Delivery, 8> deliveries;
  {
    absl::MutexLock lock(&mu_);
    if (slot->session != session) return;
    for (const auto& item : batch.items()) {
      auto it = slot->requests.find(item.request_id());
      if (it == slot->requests.end()) continue;  // aborted: drop
      PlacedRequest& placed = it->second;
      if (item.token_ids_size() > 0) placed.submit.reset();  // the client sees tokens now
      if (item.has_terminal()) {
        if (item.terminal().code() == static_cast<int>(absl::StatusCode::kUnavailable) &&
            RetriableLocked(placed)) {
          WaitLocked(item.request_id(), std::move(placed), item.terminal().message());
          slot->requests.erase(it);
          retry_cv_.SignalAll();
          continue;
        }
        deliveries.push_back({std::move(placed.sink), &item});
        slot->requests.erase(it);
      } else {
        deliveries.push_back({placed.sink, &item});
      }
    }
  }
  for (const Delivery& d : deliveries) {
    d.sink->OnOutput(d.item->token_ids(), d.item->has_terminal() ? &d.item->terminal() : nullptr,
                     d.item->logprobs());
  }
}

void WorkerPool::OnLoad(WorkerSlot* slot, uint64_t session, const internal::v1::LoadReport& load) {
  absl::MutexLock lock(&mu_);
  if (slot->session != session) return;
  slot->load.reported_pending = load.pending_tokens();
  slot->load.placed_since_report = 0;
  slot->load.draining = load.draining();
}

void WorkerPool::OnDisconnected(WorkerSlot* slot, uint64_t session, const absl::Status& status) {
  uint32_t rank;
  {
    absl::MutexLock lock(&mu_);
    if (slot->session != session) return;
    slot->session = 0;
    slot->load.connected = false;
    rank = slot->rank;
  }
  FailAll(slot,
          absl::StrCat("worker ", slot->address, " (rank ", rank, ") lost: ", status.ToString()),
          /*retry=*/true);
  NotifyChange();
}

void WorkerPool::FailAll(WorkerSlot* slot, const std::string& message, bool retry) {
  absl::flat_hash_map<uint64_t, PlacedRequest> requests;
  {
    absl::MutexLock lock(&mu_);
    requests.swap(slot->requests);
    for (auto it = requests.begin(); retry && it != requests.end();) {
      if (!RetriableLocked(it->second)) {
        ++it;
        continue;
      }
      WaitLocked(it->first, std::move(it->second), message);
      requests.erase(it++);
    }
  }
  retry_cv_.SignalAll();
  if (requests.empty()) return;
  const Terminal terminal = Unavailable(message);
  const TokenLogprobsList none;
  for (auto& [id, placed] : requests) placed.sink->OnOutput({}, &terminal, none);
}

void WorkerPool::RetryLoop() {
  while (true) {
    std::vector<std::unique_ptr<Waiting>> expired;
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return;
      retry_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(waiting_.empty() ? 1000 : 50));
      if (shutting_down_) return;
      if (waiting_.empty()) continue;
      const bool serving = StateLocked().serving();
      const auto now = std::chrono::steady_clock::now();
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        Waiting& w = *it->second;
        if (now >= w.deadline) {
          expired.push_back(std::move(it->second));
          waiting_.erase(it++);
          continue;
        }
        if (!serving) {
          ++it;
          continue;
        }
        std::shared_ptr<const internal::v1::Submit> submit = w.placed.submit;
        ++w.placed.attempt;
        uint64_t session = 0;
        auto slot = PlaceLocked(it->first, std::move(w.placed), submit->prompt_size(),
                                submit->max_tokens(), &session);
        if (!slot) {  // every worker drains: wait on
          --w.placed.attempt;
          ++it;
          continue;
        }
        ++retried_;
        // Under mu_, as in Submit: a client's Abort must not overtake it. A
        // failed write means the worker was lost again: its loss puts the
        // request back to waiting (or ends it).
        slot->connection->Submit(session, *submit).IgnoreError();
        waiting_.erase(it++);
      }
    }
    const TokenLogprobsList none;
    for (const auto& w : expired) {
      const Terminal terminal = Unavailable(absl::StrCat(
          w->why, " (the request waited ",
          std::chrono::duration_cast<std::chrono::seconds>(options_.retry_timeout).count(),
          " s to be retried, and the worker group did not come back)"));
      w->placed.sink->OnOutput({}, &terminal, none);
    }
  }
}

void WorkerPool::NotifyChange() {
  absl::MutexLock notify(&notify_mu_);
  const State now = state();
  if (now == last_notified_) return;
  last_notified_ = now;
  if (on_change_) on_change_(now);
}

}  // namespace router
}  // namespace moeserve
