#include "router/completion_loop.h"

#include <utility>

namespace moeserve {
namespace router {

CompletionLoop::CompletionLoop(std::unique_ptr<grpc::ServerCompletionQueue> cq)
    : server_cq_(cq.get()) {
  cq_ = std::move(cq);
}

CompletionLoop::CompletionLoop() : cq_(std::make_unique<grpc::CompletionQueue>()) {}

CompletionLoop::~CompletionLoop() { Shutdown(); }

void CompletionLoop::Start() {
  thread_ = std::thread([this] { Run(); });
}

void CompletionLoop::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  cq_->Shutdown();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    Run();  // never started: still drain it, as gRPC requires
  }
}

void CompletionLoop::Run() {
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) static_cast<Tag*>(tag)->Run(ok);
}

}  // namespace router
}  // namespace moeserve
