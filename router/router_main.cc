// moeserve-router: the public face of a moeserve cluster.
//
//   moeserve-router --listen 0.0.0.0:50051 --model /models/Qwen3-30B-A3B
//       --workers worker-0:7000,worker-1:7000
//
// Serves moeserve.v1.Inference, grpc.health.v1.Health (NOT_SERVING until
// every worker has sent Welcome, and again while one is lost) and server
// reflection. Prints one line when it is listening and every worker is
// connected:
//   moeserve-router ready grpc=HOST:PORT workers=N
// SIGINT/SIGTERM: health turns NOT_SERVING, new calls are refused, calls in
// flight get a short grace period, then the process exits 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cli_flags.h"
#include "common/tls.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "metrics/metrics_server.h"
#include "model/config.h"
#include "router/api_keys.h"
#include "router/completion_loop.h"
#include "router/grpc_worker_connection.h"
#include "router/health_service.h"
#include "router/http_server.h"
#include "router/inference_service.h"
#include "router/router_main.h"
#include "router/request_builder.h"
#include "router/request_metrics.h"
#include "router/worker_discovery.h"
#include "router/worker_pool.h"
#include "tools/model_files.h"

namespace moeserve {
namespace router {
namespace {

constexpr auto kShutdownGrace = std::chrono::seconds(2);
constexpr absl::Duration kResolveEvery = absl::Seconds(5);
constexpr const char* kServiceName = "moeserve.v1.Inference";

int Fail(const absl::Status& s, int code = 1) {
  std::fprintf(stderr, "moeserve-router: %s\n", std::string(s.message()).c_str());
  return code;
}

std::string BaseName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string DefaultRouterId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] ? host : "router", ":", getpid());
}

// Health and the ready line follow the pool's state.
class Readiness {
 public:
  void OnPoolChange(const WorkerPool::State& s) {
    absl::MutexLock lock(&mu_);
    state_ = s;
    ApplyLocked();
  }
  void ServerStarted(HealthService* health, std::string address) {
    absl::MutexLock lock(&mu_);
    health_ = health;
    address_ = std::move(address);
    ApplyLocked();
  }
  void SetHttpAddress(std::string address) {
    absl::MutexLock lock(&mu_);
    http_address_ = std::move(address);
  }
  void SetMetricsAddress(std::string address) {
    absl::MutexLock lock(&mu_);
    metrics_address_ = std::move(address);
  }
  // The group can serve (and the router is not stopping).
  bool Serving() {
    absl::MutexLock lock(&mu_);
    return !stopping_ && state_.serving();
  }
  // The pool's latest state (for the metrics).
  WorkerPool::State Snapshot() {
    absl::MutexLock lock(&mu_);
    WorkerPool::State s = state_;
    if (stopping_) s.connected = 0;  // as health reports it while draining
    return s;
  }
  void ShuttingDown() {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (health_ != nullptr) health_->SetServingStatus(false);
  }

 private:
  void ApplyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (health_ == nullptr || stopping_) return;
    const bool serving = state_.serving();
    health_->SetServingStatus("", serving);
    health_->SetServingStatus(kServiceName, serving);
    if (serving && !printed_) {
      printed_ = true;
      std::printf("moeserve-router ready grpc=%s workers=%d%s%s\n", address_.c_str(),
                  state_.workers,
                  http_address_.empty() ? "" : (" http=" + http_address_).c_str(),
                  metrics_address_.empty() ? "" : (" metrics=" + metrics_address_).c_str());
      std::fflush(stdout);
    }
  }

  absl::Mutex mu_;
  WorkerPool::State state_ ABSL_GUARDED_BY(mu_);
  HealthService* health_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string address_ ABSL_GUARDED_BY(mu_);
  std::string http_address_ ABSL_GUARDED_BY(mu_);
  std::string metrics_address_ ABSL_GUARDED_BY(mu_);
  bool printed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

int RouterMain(int argc, char** argv, int first) {
  // A client or worker that vanished mid-write must be an error on that
  // connection (EPIPE), never the end of the router.
  signal(SIGPIPE, SIG_IGN);
  std::string listen = "0.0.0.0:50051", workers_flag, model, chat_format;
  std::string router_id = DefaultRouterId();
  int http_port = -1;
  int metrics_port = -1;
  int drain_timeout_s = 30;
  int keepalive_s = 10;
  int retry_timeout_s = 30;
  std::string api_key_file, tls_cert, tls_key;
  TlsFiles worker_tls;
  FlagSet flags("moeserve-router",
                "Serve moeserve.v1.Inference in front of a group of moeserve workers: "
                "tokenize, validate, place each request on the least-loaded worker, stream "
                "the tokens back as text.");
  flags.String("listen", &listen, "ADDR", "gRPC address to serve on (port 0: any free port).");
  flags.String("workers", &workers_flag, "HOST:PORT,...",
               "Worker addresses (required); a single name is resolved to all its addresses "
               "and followed (Kubernetes headless Service).");
  flags.String("model", &model, "DIR",
               "Checkpoint directory (required): config.json, and tokenizer.json / "
               "tokenizer_config.json for text and chat prompts. No weights are read.");
  flags.String("chat-format", &chat_format, "NAME",
               "Chat format instead of recognising the chat template: chatml, qwen3, llama2, "
               "mistral.");
  flags.String("router-id", &router_id, "ID", "This router's name in the workers' logs.");
  flags.String("api-key-file", &api_key_file, "PATH",
               "Require an API key on Generate, GetModelInfo and /v1/* (Bearer token): one "
               "key per line. MOESERVE_API_KEY adds one more. Health stays open.");
  flags.String("tls-cert", &tls_cert, "PEM",
               "Serve gRPC (and HTTP, as HTTPS) over TLS with this certificate chain; needs "
               "--tls-key.");
  flags.String("tls-key", &tls_key, "PEM", "The private key of --tls-cert.");
  flags.String("worker-tls-cert", &worker_tls.cert, "PEM",
               "Mutual TLS to the workers: the certificate this router presents (with "
               "--worker-tls-key and --worker-tls-ca; the workers' --tls-* flags).");
  flags.String("worker-tls-key", &worker_tls.key, "PEM", "The private key of --worker-tls-cert.");
  flags.String("worker-tls-ca", &worker_tls.ca, "PEM", "CA the workers' certificates must chain to.");
  flags.Int("retry-timeout", &retry_timeout_s, "SECONDS",
            "How long a request whose worker group broke before its first token waits for "
            "the group to re-form and is then placed again (0: end it with UNAVAILABLE at "
            "once).");
  flags.Int("drain-timeout", &drain_timeout_s, "SECONDS",
            "On SIGTERM/SIGINT: health turns NOT_SERVING and new calls get UNAVAILABLE at "
            "once; calls in flight may finish for up to this long, then are cancelled.");
  flags.Int("keepalive", &keepalive_s, "SECONDS",
            "Ping a worker after this long without a message from it, and drop it (failing "
            "its requests over) when a ping goes unanswered for as long: a worker whose host "
            "vanished is noticed without waiting for TCP (0: off).");
  flags.Int("metrics-port", &metrics_port, "P",
            "Serve Prometheus metrics on http://HOST:P/metrics, HOST as --listen's (0: any free "
            "port; default: off).");
  flags.Int("http-port", &http_port, "P",
            "Also serve the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
            "/v1/models, /health) on this port of --listen's host (0: any free port; "
            "default: off).");
  if (absl::Status s = flags.Parse(argc, argv, first); !s.ok()) return Fail(s, 2);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::InvalidArgumentError(
                    absl::StrCat("unexpected argument '", flags.positional()[0], "'")),
                2);
  }
  if (keepalive_s < 0 || keepalive_s > 86400) {
    return Fail(absl::InvalidArgumentError(
                    absl::StrCat("--keepalive must be 0 to 86400 seconds, got ", keepalive_s)),
                2);
  }
  // Signals are taken by sigwait below; every thread started from here on
  // inherits the mask. Set before any gRPC object is made: gRPC starts
  // threads early, and one without the mask would take SIGTERM's default
  // action (the worker once died that way instead of draining).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (model.empty()) return Fail(absl::InvalidArgumentError("--model DIR is required"), 2);
  if (absl::Status s = CheckTlsFiles(worker_tls, "--worker-tls-"); !s.ok()) return Fail(s, 2);
  auto worker_credentials = ChannelCredentialsFor(worker_tls);
  if (!worker_credentials.ok()) return Fail(worker_credentials.status(), 2);
  if (tls_cert.empty() != tls_key.empty()) {
    return Fail(absl::InvalidArgumentError("--tls-cert and --tls-key go together"), 2);
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    auto cert = ReadPemFile(tls_cert, "--tls-cert");
    if (!cert.ok()) return Fail(cert.status(), 2);
    auto key = ReadPemFile(tls_key, "--tls-key");
    if (!key.ok()) return Fail(key.status(), 2);
    pair.cert_chain = *cert;
    pair.private_key = *key;
    ssl.pem_key_cert_pairs.push_back(pair);
    credentials = grpc::SslServerCredentials(ssl);
  }
  auto workers = ParseWorkerList(workers_flag);
  if (!workers.ok()) return Fail(workers.status(), 2);
  std::string listen_host, listen_port;
  if (absl::Status s = SplitHostPort(listen, &listen_host, &listen_port); !s.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--listen: ", s.message())), 2);
  }

  // Debian's Abseil checks lock order on every nested acquisition (gRPC's
  // own mutexes nest under ours in StartWrite): a cost per token we skip.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);


  auto config = LoadModelConfig(model);
  if (!config.ok()) return Fail(config.status());
  auto text = LoadTextFiles(model);
  if (!text.ok()) return Fail(text.status());
  const std::string model_name = BaseName(model);
  auto builder =
      RequestBuilder::Create(*std::move(config), *std::move(text), chat_format, model_name);
  if (!builder.ok()) return Fail(builder.status(), 2);
  if ((*builder)->tokenizer() == nullptr) {
    std::fprintf(stderr, "moeserve-router: %s has no tokenizer.json: only token_ids prompts\n",
                 model.c_str());
  } else if (!(*builder)->chat_status().ok()) {
    std::fprintf(stderr, "moeserve-router: chat prompts are off: %s\n",
                 std::string((*builder)->chat_status().message()).c_str());
  }

  Readiness readiness;
  WorkerPool::Options pool_options;
  pool_options.retry_timeout = std::chrono::seconds(std::max(0, retry_timeout_s));
  WorkerPool pool([&readiness](const WorkerPool::State& s) { readiness.OnPoolChange(s); },
                  pool_options);
  const char* env_key = std::getenv("MOESERVE_API_KEY");
  auto keys = ApiKeys::Load(api_key_file, env_key == nullptr ? "" : env_key);
  if (!keys.ok()) return Fail(keys.status(), 2);
  RequestMetrics request_metrics;
  InferenceService service(builder->get(), &pool, model_name, &request_metrics, &*keys);

  // Every call on the hot path (Generate, the worker streams) and health
  // run on one completion loop; nothing uses gRPC's callback API, whose
  // threads would share the poller with it (completion_loop.h). Reflection
  // is a sync service: its threads wait on queues of their own.
  HealthService health;
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder server_builder;
  int port = 0;
  server_builder.AddListeningPort(listen, credentials, &port);
  server_builder.RegisterService(&service);
  server_builder.RegisterService(&health);
  CompletionLoop loop(server_builder.AddCompletionQueue());
  std::unique_ptr<grpc::Server> server = server_builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat("cannot listen on ", listen)));
  }
  health.SetServingStatus("", false);
  health.SetServingStatus(kServiceName, false);
  service.Start(&loop);
  health.Start(&loop);
  loop.Start();
  // In this order: nothing may start an operation on the loop's queue once
  // it is shut down, and the worker streams need the loop to end.
  auto stop_serving = [&](absl::Duration grace) {
    service.StopAccepting();
    health.StopAccepting();
    server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    const bool generate_done = service.WaitForCalls(absl::Seconds(10));
    const bool health_done = health.WaitForCalls(absl::Seconds(1));
    if (!generate_done || !health_done) {
      // A call that outlives its cancellation is a bug. Closing the loop's
      // queue under it would abort the process inside gRPC, and waiting
      // longer is a hang: leave at once, and say why.
      std::fprintf(stderr, "moeserve-router: %s calls still open after shutdown; exiting\n",
                   generate_done ? "health" : "Generate");
      std::fflush(nullptr);
      std::_Exit(1);
    }
  };
  std::unique_ptr<OpenAiHttpServer> http;
  if (http_port >= 0) {
    OpenAiHttpServer::Options o;
    o.host = listen_host.empty() ? "0.0.0.0" : listen_host;
    o.port = http_port;
    o.model_name = model_name;
    o.channel = server->InProcessChannel(grpc::ChannelArguments());
    o.ready = [&readiness] { return readiness.Serving(); };
    o.keys = &*keys;
    o.tls_cert = tls_cert;
    o.tls_key = tls_key;
    auto started = OpenAiHttpServer::Start(std::move(o));
    if (!started.ok()) {
      stop_serving(absl::ZeroDuration());
      return Fail(started.status());
    }
    http = std::move(*started);
    readiness.SetHttpAddress(JoinHostPort(listen_host, std::to_string(http->port())));
  }
  std::unique_ptr<MetricsServer> metrics;
  if (metrics_port >= 0) {
    auto started = MetricsServer::Start(
        JoinHostPort(listen_host, std::to_string(metrics_port)),
        [&request_metrics, &readiness, &pool](MetricSet& m) {
          request_metrics.Fill(m);
          m.Counter("moeserve_request_retries_total",
                    "Requests placed again after their worker group broke before their first "
                    "token.",
                    static_cast<double>(pool.retried_requests()));
          const WorkerPool::State s = readiness.Snapshot();
          m.Gauge("moeserve_router_ready", "1 when every worker is connected and serving.",
                  s.serving() ? 1 : 0);
          m.Gauge("moeserve_router_workers", "Worker addresses the router knows.", s.workers);
          m.Gauge("moeserve_router_workers_connected", "Workers with an open stream.",
                  s.connected);
          m.Gauge("moeserve_router_world_size", "The group's world size (0 before any worker).",
                  s.world_size);
        });
    if (!started.ok()) {
      if (http) http->Stop();
      stop_serving(absl::ZeroDuration());
      return Fail(started.status());
    }
    metrics = std::move(*started);
    readiness.SetMetricsAddress(JoinHostPort(listen_host, std::to_string(metrics->port())));
  }
  readiness.ServerStarted(&health, JoinHostPort(listen_host, std::to_string(port)));

  WorkerDiscovery discovery(
      *workers, SystemResolver(),
      [&router_id, &worker_credentials, &loop, keepalive_s](const std::string& address) {
        GrpcWorkerConnection::Options o;
        o.credentials = *worker_credentials;
        o.loop = &loop;
        o.keepalive = std::chrono::seconds(keepalive_s);
        return std::make_unique<GrpcWorkerConnection>(address, router_id, o);
      },
      &pool);
  if (absl::Status s = discovery.Refresh(); !s.ok()) {
    std::fprintf(stderr, "moeserve-router: worker discovery: %s (retrying)\n",
                 s.ToString().c_str());
  }
  if (discovery.dns_mode()) discovery.Start(kResolveEvery);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  // Drain: refuse new work, let what runs finish (within the bound), stop.
  readiness.ShuttingDown();
  service.StartDraining();
  const auto drain_deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(std::max(0, drain_timeout_s));
  std::fprintf(stderr, "moeserve-router: %s: draining %zu requests (up to %d s)\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM", pool.active_requests(),
               drain_timeout_s);
  while (pool.active_requests() > 0 && std::chrono::steady_clock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "moeserve-router: %zu requests left at shutdown\n",
               pool.active_requests());
  stop_serving(absl::FromChrono(kShutdownGrace));
  if (http) http->Stop();
  discovery.Stop();
  pool.Shutdown();
  loop.Shutdown();
  return 0;
}

}  // namespace router
}  // namespace moeserve

