#include "router/grpc_worker_connection.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "router/status_convert.h"

namespace moeserve {
namespace router {

using internal::v1::RouterMessage;
using internal::v1::WorkerMessage;

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
  channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  stub_ = internal::v1::Worker::NewStub(channel_);
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
    if (context_ != nullptr) context_->TryCancel();
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
  if (stream_ == nullptr || session != session_ || writer_stop_) return false;
  message->set_epoch(epoch_);
  outbox_.push_back(std::move(*message));
  return true;
}

void GrpcWorkerConnection::WriteLoop(Stream* stream, grpc::ClientContext* context) {
  while (true) {
    std::deque<RouterMessage> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](GrpcWorkerConnection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
            return c->writer_stop_ || !c->outbox_.empty();
          },
          this));
      if (outbox_.empty()) return;  // stopping, nothing left
      batch.swap(outbox_);
    }
    for (const RouterMessage& m : batch) {
      if (!stream->Write(m)) {
        context->TryCancel();  // the reader sees the stream end
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(&writer_stop_));
        outbox_.clear();
        return;
      }
    }
  }
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
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    context_ = &context;
  }
  std::unique_ptr<Stream> stream = stub_->Connect(&context);
  RouterMessage hello;
  hello.set_epoch(0);
  hello.mutable_hello()->set_router_id(router_id_);
  WorkerMessage message;
  uint64_t session = 0;
  absl::Status protocol_error;
  uint32_t rank = 0;
  if (stream->Write(hello) && stream->Read(&message)) {
    if (message.has_welcome()) {
      const uint64_t epoch = message.epoch();
      rank = message.welcome().rank();
      {
        absl::MutexLock lock(&mu_);
        session = ++sessions_started_;
        session_ = session;
        epoch_ = epoch;
        stream_ = stream.get();
      }
      last_failure_.clear();
      std::fprintf(stderr, "moeserve-router: worker %s connected: rank %u of %u, epoch %llu\n",
                   address_.c_str(), rank, message.welcome().world_size(),
                   static_cast<unsigned long long>(epoch));
      std::thread writer([this, &stream, &context] { WriteLoop(stream.get(), &context); });
      listener_->OnConnected(session, epoch, message.welcome());
      while (stream->Read(&message)) {
        if (message.has_tokens()) {
          listener_->OnTokens(session, message.tokens());
        } else if (message.has_load()) {
          listener_->OnLoad(session, message.load());
        }
        // A second Welcome or an empty message changes nothing.
      }
      {
        absl::MutexLock lock(&mu_);
        writer_stop_ = true;
      }
      context.TryCancel();  // unblocks a Write stuck on a dead stream
      writer.join();
    } else {
      protocol_error = absl::InternalError("the worker's first message was not a Welcome");
      context.TryCancel();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
    outbox_.clear();
    writer_stop_ = false;
  }
  const grpc::Status status = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }
  absl::Status why = protocol_error.ok() ? ToAbslStatus(status) : protocol_error;
  if (why.ok()) why = absl::UnavailableError("the worker ended the stream");
  if (session == 0) {
    LogConnectFailure(why.ToString());
    return false;
  }
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  if (!stopping) {
    std::fprintf(stderr, "moeserve-router: worker %s (rank %u) lost: %s\n", address_.c_str(), rank,
                 why.ToString().c_str());
  }
  listener_->OnDisconnected(session, why);
  return true;
}

}  // namespace router
}  // namespace moeserve
