#include "router/grpc_worker_connection.h"

#include <algorithm>
#include <cstdio>
#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "router/status_convert.h"

namespace moeserve {
namespace router {

using internal::v1::RouterMessage;
using internal::v1::WorkerMessage;

// One stream (gRPC's async API, its tags on the connection's loop). Lives
// from RunOnce's start until every tag it started has come back. The fields
// marked "conn mu_" are guarded by the connection's mutex (written by
// Write() from any thread and by the tags); the rest belong to the read
// side's tags (never concurrent: one read in flight) and are read by the
// manager once done_.
//
// While open_ is true the read side has not ended, so Finish has not been
// started and Write() may start a write under conn mu_ (async ops never run
// a tag inline, so that cannot deadlock). The call is done_ once its Finish
// tag and its last write tag are back: only then may the manager delete it.
class GrpcWorkerConnection::Call {
 public:
  explicit Call(GrpcWorkerConnection* conn) : conn_(conn) {}

  void Begin() {
    hello_.set_epoch(0);
    hello_.mutable_hello()->set_router_id(conn_->router_id_);
    stream_ = conn_->stub_->PrepareAsyncConnect(&context_, conn_->loop_->cq());
    {
      absl::MutexLock lock(&conn_->mu_);
      write_in_flight_ = true;  // the Hello, once started
    }
    stream_->StartCall(&started_);
  }

  // Sends or queues `message` if `session` is open. Requires conn mu_.
  bool WriteLocked(uint64_t session, RouterMessage* message) {
    if (!open_ || session != session_) return false;
    message->set_epoch(epoch_);
    if (write_in_flight_) {
      outbox_.push_back(std::move(*message));
    } else {
      write_in_flight_ = true;
      out_ = std::move(*message);
      stream_->Write(out_, &wrote_);
    }
    return true;
  }

  grpc::ClientContext context_;
  // Read by the manager once done_.
  grpc::Status status_;          // set by Finish
  bool done_ = false;            // conn mu_
  absl::Status protocol_error_;  // read side
  uint64_t session_ = 0;         // written under conn mu_ by the read side; 0 until Welcome
  uint32_t rank_ = 0;            // read side

 private:
  void OnStarted(bool ok) {
    if (!ok) {  // no stream: the write and read never start
      {
        absl::MutexLock lock(&conn_->mu_);
        write_in_flight_ = false;
      }
      EndReads();
      return;
    }
    stream_->Write(hello_, &wrote_);
    stream_->Read(&in_, &read_);
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      EndReads();
      return;
    }
    if (session_ == 0) {
      if (!in_.has_welcome()) {
        protocol_error_ = absl::InternalError("the worker's first message was not a Welcome");
        context_.TryCancel();
        EndReads();
        return;
      }
      const uint64_t epoch = in_.epoch();
      rank_ = in_.welcome().rank();
      uint64_t session;
      {
        absl::MutexLock lock(&conn_->mu_);
        session = ++conn_->sessions_started_;
        session_ = session;
        epoch_ = epoch;
        open_ = true;
      }
      std::fprintf(stderr, "moeserve-router: worker %s connected: rank %u of %u, epoch %llu\n",
                   conn_->address_.c_str(), rank_, in_.welcome().world_size(),
                   static_cast<unsigned long long>(epoch));
      conn_->listener_->OnConnected(session, epoch, in_.welcome());
    } else if (in_.has_tokens()) {
      conn_->listener_->OnTokens(session_, in_.tokens());
    } else if (in_.has_load()) {
      conn_->listener_->OnLoad(session_, in_.load());
    }
    // A second Welcome or an empty message changes nothing.
    stream_->Read(&in_, &read_);
  }

  void OnWriteDone(bool ok) {
    absl::MutexLock lock(&conn_->mu_);
    if (!ok || !open_ || outbox_.empty()) {
      write_in_flight_ = false;
      if (!ok) {
        outbox_.clear();
        context_.TryCancel();  // the read side sees the stream end
      }
      MaybeDoneLocked();
      return;
    }
    out_ = std::move(outbox_.front());
    outbox_.pop_front();
    stream_->Write(out_, &wrote_);
  }

  void OnFinished(bool /*ok*/) {
    absl::MutexLock lock(&conn_->mu_);
    finished_ = true;
    MaybeDoneLocked();
  }

  // The read side ended: no more writes; collect the call's status.
  void EndReads() {
    {
      absl::MutexLock lock(&conn_->mu_);
      open_ = false;
      outbox_.clear();
    }
    context_.TryCancel();  // unblocks a write stuck on a dead stream
    if (stream_ != nullptr) stream_->Finish(&status_, &finished_tag_);
  }

  void MaybeDoneLocked() {
    // The manager may delete this as soon as conn mu_ is released.
    if (finished_ && !write_in_flight_) done_ = true;
  }

  GrpcWorkerConnection* const conn_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<RouterMessage, WorkerMessage>> stream_;
  WorkerMessage in_;                   // read side
  RouterMessage hello_;                // written once
  RouterMessage out_;                  // the write in flight (its starter owns it)
  bool open_ = false;                  // conn mu_: Welcomed and reads not ended
  uint64_t epoch_ = 0;                 // conn mu_
  bool write_in_flight_ = false;       // conn mu_
  bool finished_ = false;              // conn mu_: Finish's tag is back
  std::deque<RouterMessage> outbox_;   // conn mu_
  CompletionLoop::FunctionTag started_{[this](bool ok) { OnStarted(ok); }};
  CompletionLoop::FunctionTag read_{[this](bool ok) { OnReadDone(ok); }};
  CompletionLoop::FunctionTag wrote_{[this](bool ok) { OnWriteDone(ok); }};
  CompletionLoop::FunctionTag finished_tag_{[this](bool ok) { OnFinished(ok); }};
};

GrpcWorkerConnection::GrpcWorkerConnection(std::string address, std::string router_id,
                                           Options options)
    : address_(std::move(address)), router_id_(std::move(router_id)), options_(options) {
  grpc::ChannelArguments args;
  // gRPC's own reconnect backoff (1 s growing to 120 s by default) would make
  // our retries fail fast long after the worker is back.
  const int initial_ms = static_cast<int>(options_.initial_backoff.count());
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial_ms);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, initial_ms);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.max_backoff.count()));
  if (options_.keepalive.count() > 0) {
    const int keepalive_ms = static_cast<int>(options_.keepalive.count());
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_ms);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_ms);
    // By default gRPC stops pinging after two pings without data sent: an
    // idle stream would then go unwatched.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  channel_ = grpc::CreateCustomChannel(
      address_,
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials(), args);
  stub_ = internal::v1::Worker::NewStub(channel_);
  if (options_.loop != nullptr) {
    loop_ = options_.loop;
  } else {
    own_loop_ = std::make_unique<CompletionLoop>();
    own_loop_->Start();
    loop_ = own_loop_.get();
  }
}

GrpcWorkerConnection::~GrpcWorkerConnection() { Shutdown(); }

void GrpcWorkerConnection::Start(Listener* listener) {
  listener_ = listener;
  thread_ = std::thread([this] { Run(); });
}

void GrpcWorkerConnection::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (call_ != nullptr) call_->context_.TryCancel();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

absl::Status GrpcWorkerConnection::Submit(uint64_t session, const internal::v1::Submit& submit) {
  RouterMessage message;
  *message.mutable_submit() = submit;
  if (!Write(session, &message)) {
    return absl::UnavailableError(absl::StrCat("worker ", address_, " is not connected"));
  }
  return absl::OkStatus();
}

void GrpcWorkerConnection::Abort(uint64_t session, uint64_t request_id) {
  RouterMessage message;
  message.mutable_abort()->set_request_id(request_id);
  Write(session, &message);
}

bool GrpcWorkerConnection::Write(uint64_t session, RouterMessage* message) {
  absl::MutexLock lock(&mu_);
  return call_ != nullptr && call_->WriteLocked(session, message);
}

bool GrpcWorkerConnection::SleepUnlessStopping(std::chrono::milliseconds d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(d));
  return !stopping_;
}

void GrpcWorkerConnection::LogConnectFailure(const std::string& what) {
  if (what == last_failure_) return;
  last_failure_ = what;
  std::fprintf(stderr, "moeserve-router: worker %s: %s (retrying)\n", address_.c_str(),
               what.c_str());
}

void GrpcWorkerConnection::Run() {
  std::chrono::milliseconds backoff = options_.initial_backoff;
  for (;;) {
    if (RunOnce()) backoff = options_.initial_backoff;
    if (!SleepUnlessStopping(backoff)) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

bool GrpcWorkerConnection::RunOnce() {
  auto call = std::make_unique<Call>(this);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    call_ = call.get();
  }
  call->Begin();
  bool stopping;
  uint64_t session;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&call->done_));
    call_ = nullptr;
    stopping = stopping_;
    session = call->session_;
  }
  absl::Status why =
      call->protocol_error_.ok() ? ToAbslStatus(call->status_) : call->protocol_error_;
  if (why.ok()) why = absl::UnavailableError("the worker ended the stream");
  if (session == 0) {
    LogConnectFailure(why.ToString());
    return false;
  }
  last_failure_.clear();
  if (!stopping) {
    std::fprintf(stderr, "moeserve-router: worker %s (rank %u) lost: %s\n", address_.c_str(),
                 call->rank_, why.ToString().c_str());
  }
  listener_->OnDisconnected(session, why);
  return true;
}

}  // namespace router
}  // namespace moeserve
