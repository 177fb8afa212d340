#include "router/worker_pool.h"

#include <utility>

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

WorkerPool::WorkerPool(StateCallback on_change) : on_change_(std::move(on_change)) {}

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
  FailAll(slot.get(), absl::StrCat("worker ", address, " was removed from the group"));
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
  {
    absl::MutexLock lock(&mu_);
    slots = slots_;
  }
  for (const auto& slot : slots) slot->connection->Shutdown();
  for (const auto& slot : slots) FailAll(slot.get(), "the router is shutting down");
}

absl::StatusOr<WorkerPool::Ticket> WorkerPool::Submit(internal::v1::Submit submit,
                                                      std::shared_ptr<RequestSink> sink) {
  Ticket ticket;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    std::vector<WorkerLoad> loads;
    loads.reserve(slots_.size());
    for (const auto& s : slots_) loads.push_back(s->load);
    const int i = PickWorker(loads);
    if (i < 0) return absl::UnavailableError("no worker is connected");
    ticket.slot = slots_[i];
    ticket.request_id = next_request_id_++;
    session = ticket.slot->session;
    ticket.slot->requests.emplace(ticket.request_id, std::move(sink));
    ticket.slot->load.placed_since_report += RequestWork(submit.prompt_size(), submit.max_tokens());
  }
  submit.set_request_id(ticket.request_id);
  absl::Status sent = ticket.slot->connection->Submit(session, submit);
  if (!sent.ok()) {
    absl::MutexLock lock(&mu_);
    // If the request is gone, the worker's loss has already ended it
    // through the sink; the ticket is then harmless.
    if (ticket.slot->requests.erase(ticket.request_id) > 0) return sent;
  }
  return ticket;
}

void WorkerPool::Abort(const Ticket& ticket) {
  if (!ticket.slot) return;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    if (ticket.slot->requests.erase(ticket.request_id) == 0) return;
    session = ticket.slot->session;
  }
  ticket.slot->connection->Abort(session, ticket.request_id);
}

WorkerPool::State WorkerPool::state() const {
  absl::MutexLock lock(&mu_);
  State s;
  s.workers = static_cast<int>(slots_.size());
  for (const auto& slot : slots_) s.connected += slot->session != 0;
  s.world_size = world_size_;
  return s;
}

size_t WorkerPool::active_requests() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& slot : slots_) n += slot->requests.size();
  return n;
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
      if (item.has_terminal()) {
        deliveries.push_back({std::move(it->second), &item});
        slot->requests.erase(it);
      } else {
        deliveries.push_back({it->second, &item});
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
          absl::StrCat("worker ", slot->address, " (rank ", rank, ") lost: ", status.ToString()));
  NotifyChange();
}

void WorkerPool::FailAll(WorkerSlot* slot, const std::string& message) {
  absl::flat_hash_map<uint64_t, std::shared_ptr<RequestSink>> requests;
  {
    absl::MutexLock lock(&mu_);
    requests.swap(slot->requests);
  }
  if (requests.empty()) return;
  const Terminal terminal = Unavailable(message);
  const TokenLogprobsList none;
  for (auto& [id, sink] : requests) sink->OnOutput({}, &terminal, none);
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
