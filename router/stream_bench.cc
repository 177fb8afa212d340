// Router CPU per streamed token: an in-process InferenceService over fake
// workers, a real gRPC client on 127.0.0.1, and a "worker" thread that
// pushes one token per request per step (the worst case for the router: no
// batching of tokens within a request). The clients run in a forked child
// process, so the CPU time printed is the router process's own (it includes
// the fake worker thread, which only builds the TokenBatch protos). Budget:
// ~20 us per token.
//
//   bazel run //router:stream_bench -- 32 200 2   # requests, tokens each, ms per step
//
// With a step interval the tokens of a request go out one message each (the
// worst case); with 0 they pile up behind writes in flight and coalesce.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
#include "router/fake_worker_connection.h"
#include "router/inference_service.h"

namespace moeserve {
namespace router {
namespace {

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

int Main(int argc, char** argv) {
  const int requests = argc > 1 ? std::atoi(argv[1]) : 32;
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 200;  // at most 255 (fixture context)
  const double step_ms = argc > 3 ? std::atof(argv[3]) : 2;
  const std::string model = "tests/fixtures/qwen3_moe_chat";
  auto config = LoadModelConfig(model);
  auto text = LoadTextFiles(model);
  if (!config.ok() || !text.ok()) {
    std::fprintf(stderr, "run from the workspace root (bazel run does)\n");
    return 1;
  }
  // Debian's Abseil checks lock order on every nested acquisition (gRPC's
  // own mutexes nest under ours in StartWrite): a cost per token we skip.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // The clients live in a child process forked before gRPC starts here.
  int port_pipe[2];
  if (pipe(port_pipe) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) {
    int port = 0;
    if (read(port_pipe[0], &port, sizeof(port)) != sizeof(port)) std::_Exit(1);
    auto stub = v1::Inference::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    std::atomic<long> received{0}, messages{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < requests; ++i) {
      clients.emplace_back([&] {
        grpc::ClientContext context;
        v1::GenerateRequest request;
        request.mutable_token_ids()->add_ids(1);
        request.set_max_tokens(tokens);
        auto reader = stub->Generate(&context, request);
        v1::GenerateResponse r;
        while (reader->Read(&r)) {
          received += r.token_ids_size();
          ++messages;
        }
        reader->Finish();
      });
    }
    for (auto& c : clients) c.join();
    std::printf("client: %ld tokens in %ld messages\n", received.load(), messages.load());
    std::fflush(stdout);
    std::_Exit(0);
  }

  auto builder = RequestBuilder::Create(*std::move(config), *std::move(text), "", "bench");
  WorkerPool pool;
  auto w = std::make_unique<FakeWorkerConnection>("w0:1");
  FakeWorkerConnection* worker = w.get();
  pool.AddWorker(std::move(w));
  worker->Connect(0, 1);
  InferenceService service(builder->get(), &pool, "bench");
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  if (write(port_pipe[1], &port, sizeof(port)) != sizeof(port)) return 1;

  if (!worker->WaitForSubmits(requests, absl::Seconds(10))) {
    std::fprintf(stderr, "the requests did not arrive (tokens must be <= 255)\n");
    kill(child, SIGKILL);
    return 1;
  }
  std::vector<uint64_t> ids;
  for (const auto& s : worker->submits()) ids.push_back(s.request_id());

  const double cpu0 = CpuSeconds();
  const absl::Time t0 = absl::Now();
  for (int step = 0; step < tokens; ++step) {
    internal::v1::TokenBatch batch;
    for (uint64_t id : ids) {
      auto* item = batch.add_items();
      item->set_request_id(id);
      item->add_token_ids(10 + (step * 7 + id) % 400);
      if (step + 1 == tokens) {
        item->mutable_terminal()->set_finish_reason(internal::v1::FINISH_REASON_LENGTH);
        item->mutable_terminal()->set_completion_tokens(tokens);
      }
    }
    worker->SendBatch(batch);
    if (step_ms > 0) absl::SleepFor(absl::Milliseconds(step_ms));
  }
  int status;
  waitpid(child, &status, 0);
  const double cpu = CpuSeconds() - cpu0;
  const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  const long n = static_cast<long>(requests) * tokens;
  std::printf(
      "%d requests x %d tokens, %.1f ms steps: %.3f s wall, router process %.3f s CPU: "
      "%.2f us CPU per token\n",
      requests, tokens, step_ms, wall, cpu, 1e6 * cpu / n);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}

}  // namespace
}  // namespace router
}  // namespace moeserve

int main(int argc, char** argv) { return moeserve::router::Main(argc, argv); }
