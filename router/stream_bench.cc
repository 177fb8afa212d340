// Router CPU per streamed token, measured on the real router path and set
// beside the floor of any relay on the same machine.
//
//   bazel run -c opt //router:stream_bench -- 1 200 7.5   # requests, tokens each, ms per step
//
// Three measurements, one after the other, with the same traffic: a "worker"
// process emits one message per step holding one token for each of
// REQUESTS streams (the worst case for the router: no batching of tokens
// within a request), and a client process holds one connection per stream.
//
// 1. floor: the router's place is taken by a bare relay, one thread on
//    epoll over loopback TCP that reads each worker message and writes one
//    small message to each client connection. No protocol, no allocation, no
//    thread hop: what any router must pay per token here (wake-up, receive,
//    send) and nothing else.
// 2. loop: gRPC's own floor, the async API with one thread on one
//    completion queue holding the worker stream and every client call (ids
//    only, no router logic).
// 3. router: this process runs the real router pieces (GrpcWorkerConnection,
//    WorkerPool, InferenceService with its GenerateStream reactors) between a
//    real gRPC worker stream (moeserve.internal.v1.Worker/Connect, served by
//    the worker process) and real gRPC clients (one channel each).
//
// Both print CPU per token (getrusage of the relaying process, all its
// threads) and context switches per token; the last line is the ratio.
// Run with the same arguments several times: these machines are noisy.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"
#include "router/grpc_worker_connection.h"
#include "router/inference_service.h"

namespace moeserve {
namespace router {
namespace {

struct Usage {
  double cpu_s = 0;
  long switches = 0;
};

Usage Now() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return {u.ru_utime.tv_sec + u.ru_stime.tv_sec +
              1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec),
          u.ru_nvcsw + u.ru_nivcsw};
}

struct Traffic {
  int requests;
  int tokens;
  double step_ms;
  long total() const { return static_cast<long>(requests) * tokens; }
};

void Report(const char* what, const Traffic& t, Usage a, Usage b, double wall_s) {
  std::printf("%-6s %d streams x %d tokens, %.2f ms steps: %.2f s wall, %.1f us CPU/token, "
              "%.2f context switches/token\n",
              what, t.requests, t.tokens, t.step_ms, wall_s, 1e6 * (b.cpu_s - a.cpu_s) / t.total(),
              static_cast<double>(b.switches - a.switches) / t.total());
}

void SleepMs(double ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(ms * 1000)));
}

// --- 1. The floor: a bare relay over loopback TCP --------------------------

// A connected pair of loopback TCP sockets, Nagle off.
bool TcpPair(int* a, int* b) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(listener, 1) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len)) {
    return false;
  }
  *a = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(*a, reinterpret_cast<sockaddr*>(&addr), len) != 0) return false;
  *b = accept(listener, nullptr, nullptr);
  close(listener);
  const int one = 1;
  setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return *b >= 0;
}

constexpr int kFloorItem = 8;    // bytes per token in a worker message
constexpr int kFloorChunk = 24;  // bytes per token to a client

bool ReadFully(int fd, long bytes) {
  char buf[4096];
  while (bytes > 0) {
    const ssize_t k = read(fd, buf, std::min<long>(bytes, sizeof(buf)));
    if (k <= 0) return false;
    bytes -= k;
  }
  return true;
}

bool RunFloor(const Traffic& t) {
  int worker_out, relay_in;
  if (!TcpPair(&worker_out, &relay_in)) return false;
  std::vector<int> relay_out(t.requests), client_in(t.requests);
  for (int i = 0; i < t.requests; ++i) {
    if (!TcpPair(&relay_out[i], &client_in[i])) return false;
  }
  const pid_t clients = fork();
  if (clients == 0) {
    std::vector<std::thread> threads;
    std::atomic<bool> ok{true};
    for (int fd : client_in) {
      threads.emplace_back([&, fd] { ok = ReadFully(fd, long{kFloorChunk} * t.tokens) && ok; });
    }
    for (auto& th : threads) th.join();
    std::_Exit(ok ? 0 : 1);
  }
  const pid_t worker = fork();
  if (worker == 0) {
    std::vector<char> message(static_cast<size_t>(kFloorItem) * t.requests, 1);
    for (int step = 0; step < t.tokens; ++step) {
      if (write(worker_out, message.data(), message.size()) != static_cast<ssize_t>(message.size())) {
        std::_Exit(1);
      }
      SleepMs(t.step_ms);
    }
    std::_Exit(0);
  }
  const Usage u0 = Now();
  const absl::Time t0 = absl::Now();
  const int epoll = epoll_create1(0);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = relay_in;
  epoll_ctl(epoll, EPOLL_CTL_ADD, relay_in, &event);
  const long message = long{kFloorItem} * t.requests;
  const long total = message * t.tokens;
  std::vector<char> buf(static_cast<size_t>(message) * 64);
  char chunk[kFloorChunk] = {};
  long received = 0;
  while (received < total) {
    if (epoll_wait(epoll, &event, 1, -1) != 1) continue;
    const long before = received / message;
    const ssize_t k = read(relay_in, buf.data(), buf.size());
    if (k <= 0) break;
    received += k;
    // One client message per token of each complete worker message.
    for (long m = before; m < received / message; ++m) {
      for (int fd : relay_out) {
        if (write(fd, chunk, sizeof(chunk)) != sizeof(chunk)) return false;
      }
    }
  }
  const Usage u1 = Now();
  const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  int status_clients = 0, status_worker = 0;
  waitpid(clients, &status_clients, 0);
  waitpid(worker, &status_worker, 0);
  close(epoll);
  close(relay_in);
  close(worker_out);
  for (int i = 0; i < t.requests; ++i) {
    close(relay_out[i]);
    close(client_in[i]);
  }
  if (received != total || status_clients != 0 || status_worker != 0) {
    std::fprintf(stderr, "floor: the relay lost data\n");
    return false;
  }
  Report("floor", t, u0, u1, wall);
  return true;
}


// --- 2. gRPC's own floor: one thread on one completion queue ----------------

// The least a gRPC router can do: the async API, one thread draining one
// completion queue that holds both the worker stream and every client call,
// so that a worker message is read, and each client's write started, with
// no thread hop. No tokenizer, no placement, no metrics: ids only.
class LoopRelay {
 public:
  LoopRelay(const Traffic& t, int worker_port) : t_(t) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&service_);
    cq_ = b.AddCompletionQueue();
    server_ = b.BuildAndStart();
    stub_ = internal::v1::Worker::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", worker_port), grpc::InsecureChannelCredentials()));
  }
  int port() const { return port_; }
  // When the last call was placed (the worker starts its steps then).
  Usage start() const { return start_; }
  absl::Time start_time() const { return start_time_; }

  // Serves until every call has finished; returns once the loop is done.
  void Run() {
    worker_ = stub_->AsyncConnect(&worker_context_, cq_.get(), &started_);
    AcceptNext();
    void* tag;
    bool ok;
    while (finished_ < t_.requests && cq_->Next(&tag, &ok)) static_cast<Tag*>(tag)->fn(ok);
    worker_context_.TryCancel();
    server_->Shutdown(std::chrono::system_clock::now());
    cq_->Shutdown();
    while (cq_->Next(&tag, &ok)) {
    }
  }

 private:
  struct Tag {
    std::function<void(bool)> fn;
  };
  struct Call {
    grpc::ServerContext context;
    v1::GenerateRequest request;
    grpc::ServerAsyncWriter<v1::GenerateResponse> writer{&context};
    v1::GenerateResponse out;
    std::vector<int32_t> pending;
    bool writing = false, done = false, finished = false;
    Tag accepted, wrote;
  };

  void AcceptNext() {
    auto* call = new Call;
    calls_.emplace_back(call);
    call->accepted.fn = [this, call](bool ok) {
      if (!ok) return;
      internal::v1::RouterMessage m;
      m.set_epoch(1);
      m.mutable_submit()->set_request_id(calls_.size());
      m.mutable_submit()->add_prompt(1);
      m.mutable_submit()->set_max_tokens(t_.tokens);
      by_id_[calls_.size()] = call;
      SendToWorker(std::move(m));
      if (static_cast<int>(calls_.size()) < t_.requests) {
        AcceptNext();
      } else {
        start_ = Now();
        start_time_ = absl::Now();
      }
    };
    call->wrote.fn = [this, call](bool ok) {
      call->writing = false;
      if (call->finished) {
        ++finished_;
        return;
      }
      if (ok) Flush(call);
    };
    service_.RequestGenerate(&call->context, &call->request, &call->writer, cq_.get(), cq_.get(),
                             &call->accepted);
  }

  void Flush(Call* call) {
    if (call->writing) return;
    if (!call->pending.empty()) {
      call->out.Clear();
      call->out.mutable_token_ids()->Add(call->pending.begin(), call->pending.end());
      call->pending.clear();
      call->writing = true;
      call->writer.Write(call->out, &call->wrote);
    } else if (call->done && !call->finished) {
      call->finished = call->writing = true;
      call->writer.Finish(grpc::Status::OK, &call->wrote);
    }
  }

  void SendToWorker(internal::v1::RouterMessage m) {
    outbox_.push_back(std::move(m));
    if (!worker_writing_ && worker_ready_) WriteNext();
  }
  void WriteNext() {
    if (outbox_.empty()) return;
    worker_out_ = std::move(outbox_.front());
    outbox_.pop_front();
    worker_writing_ = true;
    worker_->Write(worker_out_, &worker_wrote_);
  }

  const Traffic t_;
  int port_ = 0;
  v1::Inference::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<internal::v1::Worker::Stub> stub_;
  grpc::ClientContext worker_context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<internal::v1::RouterMessage,
                                                internal::v1::WorkerMessage>> worker_;
  internal::v1::RouterMessage worker_out_;
  internal::v1::WorkerMessage worker_in_;
  std::deque<internal::v1::RouterMessage> outbox_;
  bool worker_writing_ = false, worker_ready_ = false;
  std::vector<std::unique_ptr<Call>> calls_;
  std::map<uint64_t, Call*> by_id_;
  int finished_ = 0;
  Usage start_;
  absl::Time start_time_;
  Tag started_{[this](bool ok) {
    if (!ok) return;
    internal::v1::RouterMessage hello;
    hello.mutable_hello()->set_router_id("loop");
    worker_writing_ = true;
    worker_->Write(hello, &worker_wrote_);
    worker_->Read(&worker_in_, &worker_read_);
  }};
  Tag worker_wrote_{[this](bool ok) {
    worker_writing_ = false;
    worker_ready_ = true;
    if (ok) WriteNext();
  }};
  Tag worker_read_{[this](bool ok) {
    if (!ok) return;
    if (worker_in_.has_tokens()) {
      for (const auto& item : worker_in_.tokens().items()) {
        auto it = by_id_.find(item.request_id());
        if (it == by_id_.end()) continue;
        Call* call = it->second;
        call->pending.insert(call->pending.end(), item.token_ids().begin(), item.token_ids().end());
        if (item.has_terminal()) call->done = true;
        Flush(call);
      }
    }
    worker_->Read(&worker_in_, &worker_read_);
  }};
};

bool RunLoop(const Traffic& t, int worker_port, int clients_port_fd, pid_t clients) {
  LoopRelay relay(t, worker_port);
  const int port = relay.port();
  if (write(clients_port_fd, &port, sizeof(port)) != sizeof(port)) return false;
  relay.Run();
  int status = 0;
  waitpid(clients, &status, 0);
  const Usage u0 = relay.start(), u1 = Now();
  const absl::Time t0 = relay.start_time();
  if (status != 0) {
    std::fprintf(stderr, "loop: the clients did not get every token\n");
    return false;
  }
  Report("loop", t, u0, u1, absl::ToDoubleSeconds(absl::Now() - t0));
  return true;
}

// --- 3. The real router -----------------------------------------------------

// The worker process's side of Worker/Connect: Welcome (rank 0 of 1), then,
// once `requests` Submits have arrived, `tokens` TokenBatches `step_ms` apart
// with one token for each request (the last with its terminal).
class PacedWorker final : public internal::v1::Worker::Service {
 public:
  explicit PacedWorker(Traffic t) : t_(t) {}

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<internal::v1::WorkerMessage,
                                                internal::v1::RouterMessage>* stream) override {
    internal::v1::RouterMessage in;
    if (!stream->Read(&in) || !in.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected Hello");
    }
    constexpr uint64_t kEpoch = 1;
    internal::v1::WorkerMessage out;
    out.set_epoch(kEpoch);
    out.mutable_welcome()->set_rank(0);
    out.mutable_welcome()->set_world_size(1);
    stream->Write(out);
    std::vector<uint64_t> ids;
    while (static_cast<int>(ids.size()) < t_.requests && stream->Read(&in)) {
      if (in.has_submit()) ids.push_back(in.submit().request_id());
    }
    // Drain Aborts or anything else the router sends from here on.
    std::thread reader([stream] {
      internal::v1::RouterMessage ignored;
      while (stream->Read(&ignored)) {
      }
    });
    for (int step = 0; step < t_.tokens && !context->IsCancelled(); ++step) {
      out.Clear();
      out.set_epoch(kEpoch);
      internal::v1::TokenBatch* batch = out.mutable_tokens();
      for (uint64_t id : ids) {
        auto* item = batch->add_items();
        item->set_request_id(id);
        item->add_token_ids(10 + (step * 7 + id) % 400);
        if (step + 1 == t_.tokens) {
          item->mutable_terminal()->set_finish_reason(internal::v1::FINISH_REASON_LENGTH);
          item->mutable_terminal()->set_completion_tokens(t_.tokens);
        }
      }
      stream->Write(out);
      SleepMs(t_.step_ms);
    }
    // The router keeps the stream open; the parent ends this process.
    reader.join();
    return grpc::Status::OK;
  }

 private:
  const Traffic t_;
};

// Waits for a port number on `fd`.
int ReadPort(int fd) {
  int port = 0;
  return read(fd, &port, sizeof(port)) == sizeof(port) ? port : 0;
}

// The client process: one channel (its own TCP connection) per stream.
[[noreturn]] void RunClients(int port_fd, const Traffic& t) {
  const int port = ReadPort(port_fd);
  std::atomic<long> received{0}, messages{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < t.requests; ++i) {
    threads.emplace_back([&, i] {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
      args.SetInt("moeserve.bench_client", i);
      auto stub = v1::Inference::NewStub(grpc::CreateCustomChannel(
          absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args));
      grpc::ClientContext context;
      v1::GenerateRequest request;
      request.mutable_token_ids()->add_ids(1);
      request.set_max_tokens(t.tokens);
      auto reader = stub->Generate(&context, request);
      v1::GenerateResponse r;
      while (reader->Read(&r)) {
        received += r.token_ids_size();
        ++messages;
      }
      reader->Finish();
    });
  }
  for (auto& th : threads) th.join();
  // Tokens that piled up behind a write in flight go out together.
  std::printf("       (the clients read %ld tokens in %ld messages)\n", received.load(),
              messages.load());
  std::fflush(stdout);
  std::_Exit(received == t.total() ? 0 : 1);
}

bool RunGrpc(const Traffic& t) {
  const std::string model = "tests/fixtures/qwen3_moe_chat";
  auto config = LoadModelConfig(model);
  auto text = LoadTextFiles(model);
  if (!config.ok() || !text.ok()) {
    std::fprintf(stderr, "run from the workspace root (bazel run does)\n");
    return false;
  }
  // The children are forked before this process starts gRPC: one worker
  // process serves both runs (one stream each), one client process each.
  int worker_port[2], loop_port[2], router_port[2];
  if (pipe(worker_port) != 0 || pipe(loop_port) != 0 || pipe(router_port) != 0) return false;
  const pid_t worker = fork();
  if (worker == 0) {
    PacedWorker service(t);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    auto server = b.BuildAndStart();
    if (write(worker_port[1], &port, sizeof(port)) != sizeof(port)) std::_Exit(1);
    server->Wait();
    std::_Exit(0);
  }
  const pid_t loop_clients = fork();
  if (loop_clients == 0) RunClients(loop_port[0], t);
  const pid_t clients = fork();
  if (clients == 0) RunClients(router_port[0], t);
  const int worker_grpc_port = ReadPort(worker_port[0]);
  if (!RunLoop(t, worker_grpc_port, loop_port[1], loop_clients)) {
    kill(worker, SIGKILL);
    kill(clients, SIGKILL);
    return false;
  }

  // As moeserve-router does (router_main.cc).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto builder = RequestBuilder::Create(*std::move(config), *std::move(text), "", "bench");
  bool ok = false;
  {
    WorkerPool pool;
    InferenceService service(builder->get(), &pool, "bench");
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&service);
    CompletionLoop loop(b.AddCompletionQueue());
    auto server = b.BuildAndStart();
    service.Start(&loop);
    loop.Start();
    GrpcWorkerConnection::Options options;
    options.loop = &loop;
    pool.AddWorker(std::make_unique<GrpcWorkerConnection>(
        absl::StrCat("127.0.0.1:", worker_grpc_port), "bench", options));
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!pool.state().serving() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    if (write(router_port[1], &port, sizeof(port)) != sizeof(port)) return false;
    // Measure from the moment every request is placed (the worker starts
    // its steps then) until the clients have read everything.
    while (pool.active_requests() < static_cast<size_t>(t.requests) && absl::Now() < deadline) {
      absl::SleepFor(absl::Microseconds(200));
    }
    const Usage u0 = Now();
    const absl::Time t0 = absl::Now();
    int status = 0;
    waitpid(clients, &status, 0);
    const Usage u1 = Now();
    const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
    ok = status == 0;
    if (ok) {
      Report("router", t, u0, u1, wall);
    } else {
      std::fprintf(stderr, "router: the clients did not get every token\n");
    }
    kill(worker, SIGKILL);
    waitpid(worker, &status, 0);
    service.StopAccepting();
    server->Shutdown(std::chrono::system_clock::now());
    service.WaitForCalls(absl::Seconds(10));
    pool.Shutdown();
    loop.Shutdown();
  }
  return ok;
}

int Main(int argc, char** argv) {
  Traffic t;
  t.requests = argc > 1 ? std::atoi(argv[1]) : 8;
  t.tokens = argc > 2 ? std::atoi(argv[2]) : 200;  // at most 255 (the fixture's context)
  t.step_ms = argc > 3 ? std::atof(argv[3]) : 2;
  if (t.requests < 1 || t.tokens < 1 || t.tokens > 255 || t.step_ms < 0) {
    std::fprintf(stderr, "usage: stream_bench REQUESTS TOKENS(1-255) STEP_MS\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // nothing buffered to copy into a fork
  // The floor first: it forks plain processes, and nothing may fork after
  // gRPC has started in this process.
  if (!RunFloor(t)) return 1;
  return RunGrpc(t) ? 0 : 1;
}

}  // namespace
}  // namespace router
}  // namespace moeserve

int main(int argc, char** argv) { return moeserve::router::Main(argc, argv); }
