// CompletionLoop: one thread draining one gRPC completion queue. Every tag
// put on the queue is a CompletionLoop::Tag, whose Run(ok) the thread calls.
//
// Why: gRPC's callback API runs reactions on a pool of "nexting" threads
// (cores / 2, at least 2) that hand the poller role to each other on every
// event, so each streamed token cost the router several thread wake-ups.
// With the async API on one loop, the worker stream's read, the client
// write it starts and the write's completion all run on this thread
// (router/stream_bench on the 2-vCPU VM: 23 -> 17 us CPU per token at 32
// streams and 1 ms steps, 348 -> 217 us at one stream; bench/README.md).
// For that to hold, nothing else in the process may use the callback API:
// its idle threads would take the poller role in turn.
//
//   grpc::ServerBuilder b;
//   CompletionLoop loop(b.AddCompletionQueue());  // or CompletionLoop() for a client-only one
//   ... b.BuildAndStart(), post the first requests with loop.cq() ...
//   loop.Start();
//   ... server->Shutdown(); loop.Shutdown();      // drains every tag, joins
//
// Tags may be started from any thread (gRPC's async ops are thread-safe and
// never run a tag inline); Run is only ever called on the loop's thread.
#ifndef MOESERVE_ROUTER_COMPLETION_LOOP_H_
#define MOESERVE_ROUTER_COMPLETION_LOOP_H_

#include <functional>
#include <memory>
#include <thread>

#include "grpcpp/completion_queue.h"

namespace moeserve {
namespace router {

class CompletionLoop {
 public:
  class Tag {
   public:
    virtual void Run(bool ok) = 0;

   protected:
    ~Tag() = default;
  };

  // A tag that calls a function (a member of the object that owns it).
  class FunctionTag final : public Tag {
   public:
    explicit FunctionTag(std::function<void(bool)> fn) : fn_(std::move(fn)) {}
    void Run(bool ok) override { fn_(ok); }

   private:
    std::function<void(bool)> fn_;
  };

  // A loop on a server's queue (from ServerBuilder::AddCompletionQueue).
  explicit CompletionLoop(std::unique_ptr<grpc::ServerCompletionQueue> cq);
  // A loop on a queue of its own, for client calls only.
  CompletionLoop();
  ~CompletionLoop();  // Shutdown()

  grpc::ServerCompletionQueue* server_cq() const { return server_cq_; }
  grpc::CompletionQueue* cq() const { return cq_.get(); }

  // Starts the thread. Once.
  void Start();
  // Shuts the queue down and returns once every tag has run and the thread
  // has ended. For a server's queue, call it after Server::Shutdown().
  // Idempotent; not from the loop's own thread.
  void Shutdown();

 private:
  void Run();

  std::unique_ptr<grpc::CompletionQueue> cq_;
  grpc::ServerCompletionQueue* server_cq_ = nullptr;  // cq_, when it is a server's
  std::thread thread_;
  bool shut_down_ = false;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_COMPLETION_LOOP_H_
