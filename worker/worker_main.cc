// moeserve-worker: one rank of an expert-parallel group.
//
//   moeserve-worker --rank 0 --world-size 2 --model DIR \
//       --listen 0.0.0.0:50061 --coordinator worker-0.workers:50062
//
// Start-up: serve the Worker service (UNAVAILABLE until ready) and, on rank
// 0, the Coordinator store; load the dense weights and this rank's experts;
// meet the peers through the store (epoch, addresses, Gloo pairs); build the
// Collective; then print
//   moeserve-worker ready rank=R world=W listen=HOST:PORT experts=B-E ...
// on stdout and run the engine loop until SIGINT/SIGTERM or the group fails.
#include "worker/worker_main.h"

#include <errno.h>
#include <fcntl.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "collective/coordinator.h"
#include "collective/group.h"
#include "collective/in_memory_kv_store.h"
#include "common/cli_flags.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "engine/gpu_transformer.h"
#include "engine/transformer.h"
#include "grpcpp/health_check_service_interface.h"
#include "kernels/cpu/linear.h"
#include "model/weights.h"
#include "worker/engine.h"
#include "worker/expert_parallel.h"
#include "worker/expert_shards.h"
#include "worker/group_watch.h"
#include "worker/peer_ring.h"
#include "worker/worker_metrics.h"
#include "worker/worker_service.h"

namespace moeserve {
namespace {

struct WorkerFlags {
  int rank = 0;
  int world_size = 1;
  std::string model;
  std::string listen = "0.0.0.0:50061";
  std::string advertise;
  std::string coordinator;
  std::string collective = "auto";
  std::string host;
  int threads = 0;
  int timeout_s = 30;
  int formation_timeout_s = 300;
  int prefill_chunk = 256;
  int max_step_tokens = 2048;
  int max_num_seqs = 256;
  int max_waiting = 1024;
  int block_size = 16;
  int64_t kv_cache_bytes = int64_t{1} << 30;
  bool prefix_caching = true;
  int metrics_port = -1;
  int drain_timeout_s = 30;
  int keepalive_s = 10;
  TlsFiles tls;
  std::string device = "cpu";
  bool enforce_eager = false;
  int cuda_device = -1;  // from --device cuda:N; -1 for the CPU
};

// "cpu" -> -1; "cuda" -> 0; "cuda:N" -> N.
absl::StatusOr<int> ParseDevice(const std::string& device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos && device.size() < 10) {
    return std::stoi(device.substr(5));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device must be cpu, cuda or cuda:N, got '", device, "'"));
}

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host;
}

bool IsWildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "*";
}

std::string MyHostName() {
  char name[256] = {0};
  if (::gethostname(name, sizeof name - 1) != 0) return "127.0.0.1";
  return name;
}

uint64_t ExpertBytes(const ModelWeights& w) {
  uint64_t bytes = 0;
  for (const LayerWeights& layer : w.layers) {
    for (int e = w.expert_begin; e < w.expert_end && layer.is_moe; ++e) {
      const FeedForward& f = layer.experts[e];
      bytes += f.gate.nbytes() + f.up.nbytes() + f.down.nbytes();
    }
  }
  return bytes;
}

// Builds a server on `address` with `services`; returns the bound port.
// `keepalive_s` > 0: a connection silent that long is pinged, and closed
// when the ping goes unanswered as long (a router or peer that vanished
// without closing its socket: its requests are then freed).
absl::StatusOr<std::unique_ptr<grpc::Server>> Serve(
    const std::string& address, const std::vector<grpc::Service*>& services, int* port,
    std::shared_ptr<grpc::ServerCredentials> credentials, int keepalive_s) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, credentials, port);
  // Routers ping at their own --keepalive; gRPC's default would take pings
  // more often than every 5 minutes on an idle stream as abuse and close it.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  if (keepalive_s > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_s * 1000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_s * 1000);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

std::string WithPort(const std::string& address, int port) {
  const size_t colon = address.rfind(':');
  return absl::StrCat(address.substr(0, colon), ":", port);
}

absl::Status Validate(const WorkerFlags& f) {
  if (f.model.empty()) return absl::InvalidArgumentError("--model DIR is required");
  if (f.world_size < 1) return absl::InvalidArgumentError("--world-size must be >= 1");
  if (f.max_num_seqs < 1) return absl::InvalidArgumentError("--max-num-seqs must be >= 1");
  if (f.max_waiting < 0) return absl::InvalidArgumentError("--max-waiting must be >= 0");
  if (f.keepalive_s < 0 || f.keepalive_s > 86400) {
    return absl::InvalidArgumentError(
        absl::StrCat("--keepalive must be 0 to 86400 seconds, got ", f.keepalive_s));
  }
  if (f.max_step_tokens < 1) {
    return absl::InvalidArgumentError("--max-num-batched-tokens must be >= 1");
  }
  if (f.prefill_chunk < 1) return absl::InvalidArgumentError("--prefill-chunk must be >= 1");
  if (f.block_size < 1 || f.block_size > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--block-size must be in [1, 1024], got ", f.block_size));
  }
  if (f.kv_cache_bytes < 1) return absl::InvalidArgumentError("--kv-cache-bytes must be >= 1");
  if (f.rank < 0 || f.rank >= f.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rank ", f.rank, " is outside [0, --world-size ", f.world_size, ")"));
  }
  if (f.world_size > 1 && f.coordinator.empty()) {
    return absl::InvalidArgumentError(
        "--coordinator HOST:PORT is required when --world-size > 1 (rank 0 serves it)");
  }
  if (f.listen.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen must be HOST:PORT, got '", f.listen, "'"));
  }
  if (f.collective != "auto" && f.collective != "local" && f.collective != "gloo" &&
      f.collective != "nccl") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--collective must be auto, local, gloo or nccl, got '", f.collective, "'"));
  }
  if (f.timeout_s <= 0 || f.formation_timeout_s <= 0) {
    return absl::InvalidArgumentError("--timeout and --formation-timeout must be > 0");
  }
  MOE_RETURN_IF_ERROR(ParseDevice(f.device).status());
  if (f.collective == "nccl" && f.device == "cpu") {
    return absl::InvalidArgumentError(
        "--collective=nccl exchanges GPU buffers: it needs --device cuda:N (the CPU engine "
        "uses gloo)");
  }
  return absl::OkStatus();
}

// SIGINT/SIGTERM wake a watcher thread through a pipe (the self-pipe trick):
// a handler works whichever thread the kernel picks. A signal mask covers
// only threads started after it is set, and libraries start threads early
// (gRPC as soon as credentials are made); one of those once took SIGTERM's
// default action and killed the worker instead of draining it.
int g_signal_pipe_write = -1;

void OnStopSignal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] ssize_t n = write(g_signal_pipe_write, &c, 1);  // async-signal-safe
}

class SignalWatcher {
 public:
  SignalWatcher() {
    if (pipe2(fds_, O_CLOEXEC) != 0) return;
    g_signal_pipe_write = fds_[1];
    struct sigaction sa = {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  }
  // Calls on_signal() for the first signal (on the watcher thread).
  void Start(std::function<void()> on_signal) {
    const int fd = fds_[0];
    std::thread([fd, on_signal] {
      char c;
      while (read(fd, &c, 1) < 0 && errno == EINTR) {
      }
      on_signal();
    }).detach();
  }

 private:
  int fds_[2] = {-1, -1};
};

// The epoch this rank forms next. Rank 0 proposes one (microseconds since
// 1970: unique across its own restarts, whose store starts empty) and
// publishes it; the others wait until the store holds one other than
// `last` (the epoch that broke; 0 at start-up), skipping one under which
// this rank is already registered: that is its previous incarnation's, and
// the survivors are about to leave it. Waits at most `timeout`, retrying
// while rank 0's store cannot be reached (it may be restarting).
absl::StatusOr<uint64_t> JoinEpoch(KvStore& store, int rank, uint64_t last,
                                   absl::Duration timeout) {
  if (rank == 0) {
    const uint64_t epoch =
        std::max(static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())), last + 1);
    MOE_RETURN_IF_ERROR(store.Set("epoch", std::to_string(epoch)));
    return epoch;
  }
  const absl::Time deadline = absl::Now() + timeout;
  absl::Time next_note = absl::Now() + absl::Seconds(10);
  absl::Status why = absl::DeadlineExceededError("no epoch was published");
  uint64_t skip = last;
  while (absl::Now() < deadline) {
    auto e = store.Get("epoch", std::min(absl::Seconds(1), deadline - absl::Now()));
    uint64_t epoch = 0;
    if (e.ok() && absl::SimpleAtoi(*e, &epoch) && epoch != skip) {
      if (last != 0 || !store.Get(absl::StrCat("epoch/", epoch, "/worker/", rank),
                                  absl::Milliseconds(1))
                             .ok()) {
        return epoch;
      }
      skip = epoch;  // our previous incarnation's
      continue;
    }
    if (!e.ok()) why = e.status();
    if (absl::Now() > next_note) {
      std::fprintf(stderr, "moeserve-worker rank %d: waiting for rank 0 to propose an epoch (%s)\n",
                   rank, std::string(why.message()).c_str());
      next_note = absl::Now() + absl::Seconds(10);
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("rank 0 proposed no new epoch in time (last: ", why.message(), ")"));
}

int Fail(const absl::Status& s, int rank) {
  std::fprintf(stderr, "moeserve-worker rank %d: %s\n", rank, std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int WorkerMain(int argc, char** argv, int first) {
  // Gloo writes to its peers' sockets without MSG_NOSIGNAL: a peer that died
  // would otherwise kill this rank with SIGPIPE instead of failing the
  // collective call, and the survivors could not re-form.
  signal(SIGPIPE, SIG_IGN);
  WorkerFlags f;
  FlagSet flags("moeserve-worker",
                "One rank of an expert-parallel worker group: holds the dense weights and "
                "its slice of the experts, steps in lockstep with its peers, and serves the "
                "requests routers place on it.");
  flags.Int("rank", &f.rank, "R", "This worker's rank in [0, world-size).");
  flags.Int("world-size", &f.world_size, "W", "Ranks in the group.");
  flags.String("model", &f.model, "DIR", "Hugging Face checkpoint directory.");
  flags.String("listen", &f.listen, "HOST:PORT",
               "Address of the Worker service (port 0: any free port).");
  flags.String("advertise", &f.advertise, "HOST:PORT",
               "Address peers use to reach this worker (default: --listen, with this "
               "machine's host name when --listen is a wildcard).");
  flags.String("coordinator", &f.coordinator, "HOST:PORT",
               "Rank 0's key-value store, where the group meets. Rank 0 serves it there "
               "(port 0: any free port, printed as `coordinator=HOST:PORT`).");
  flags.String("collective", &f.collective, "KIND",
               "auto (local at W=1, else gloo), local, gloo, nccl.");
  flags.String("host", &f.host, "HOST",
               "Address Gloo binds and advertises (default: the --advertise host).");
  flags.Int("threads", &f.threads, "N", "CPU threads for the kernels (0: all cores).");
  flags.Int("timeout", &f.timeout_s, "SECONDS",
            "Longest wait for any collective call before the group is declared broken.");
  flags.Int("formation-timeout", &f.formation_timeout_s, "SECONDS",
            "Longest wait for the other ranks to join.");
  flags.Int("prefill-chunk", &f.prefill_chunk, "N", "Prompt tokens per request per step.");
  flags.Int("max-num-batched-tokens", &f.max_step_tokens, "N",
            "Tokens of all requests per step (decode tokens and prefill chunks together).");
  flags.Int("max-step-tokens", &f.max_step_tokens, "N", "Old name of --max-num-batched-tokens.");
  flags.Int("block-size", &f.block_size, "N", "Positions per KV-cache block.");
  flags.Int64("kv-cache-bytes", &f.kv_cache_bytes, "BYTES",
              "Memory for the KV cache (keys and values of every layer, float on the CPU); "
              "committed as blocks are first used. When it runs out, the latest requests are "
              "preempted and recomputed later.");
  flags.String("tls-cert", &f.tls.cert, "PEM",
               "Mutual TLS on this worker's gRPC traffic (routers, peers, rank 0's store): the "
               "certificate it presents; with --tls-key and --tls-ca.");
  flags.String("tls-key", &f.tls.key, "PEM", "The private key of --tls-cert.");
  flags.String("tls-ca", &f.tls.ca, "PEM",
               "CA certificates: only peers with a certificate they signed are accepted.");
  flags.Int("drain-timeout", &f.drain_timeout_s, "SECONDS",
            "On SIGTERM/SIGINT: health turns NOT_SERVING and new requests get UNAVAILABLE; "
            "admitted ones may finish for up to this long before the group stops.");
  flags.Int("keepalive", &f.keepalive_s, "SECONDS",
            "Ping a router's or peer's connection after this long without a message on it, "
            "and close it (freeing that router's requests) when a ping goes unanswered for as "
            "long (0: off).");
  flags.Int("metrics-port", &f.metrics_port, "P",
            "Serve Prometheus metrics on http://HOST:P/metrics, HOST as --listen's (0: any free "
            "port; default: off). The ready line gives the address.");
  flags.Bool("enable-prefix-caching", &f.prefix_caching,
             "Share the KV blocks of prompt prefixes requests have in common "
             "(--no-enable-prefix-caching: off).");
  flags.Int("max-num-seqs", &f.max_num_seqs, "N",
            "Requests scheduled together (first come, first served); later ones wait.");
  flags.Int("max-waiting", &f.max_waiting, "N",
            "Requests that may wait beyond --max-num-seqs; more get RESOURCE_EXHAUSTED.");
  flags.String("device", &f.device, "DEV",
               "cpu, or cuda:N: the whole engine on GPU N (weights, KV cache, expert "
               "exchange; --kv-cache-bytes is then GPU memory).");
  flags.Bool("enforce-eager", &f.enforce_eager,
             "With --device cuda:N, launch every step's kernels one by one instead of replaying "
             "captured CUDA graphs for decode steps (as vLLM's flag).");
  if (absl::Status s = flags.Parse(argc, argv, first); !s.ok()) {
    std::fprintf(stderr, "moeserve-worker: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::InvalidArgumentError(
                    absl::StrCat("unexpected argument '", flags.positional()[0], "'")),
                f.rank);
  }
  if (absl::Status s = Validate(f); !s.ok()) return Fail(s, f.rank);
  f.cuda_device = *ParseDevice(f.device);
  if (absl::Status s = CheckTlsFiles(f.tls, "--tls-"); !s.ok()) return Fail(s, f.rank);
  auto server_credentials = ServerCredentialsFor(f.tls);
  if (!server_credentials.ok()) return Fail(server_credentials.status(), f.rank);
  auto channel_credentials = ChannelCredentialsFor(f.tls);
  if (!channel_credentials.ok()) return Fail(channel_credentials.status(), f.rank);
  SignalWatcher signals;  // the handler, before any thread that could run it
  kernels::cpu::SetNumThreads(f.threads);
  std::atomic<Engine*> running{nullptr};
  std::atomic<grpc::HealthCheckServiceInterface*> health{nullptr};
  WorkerService service;  // before the handler, which tells routers it drains
  std::mutex stop_mu;  // held while the handler uses `running`
  std::atomic<bool> stopping{false};
  signals.Start([&] {
    std::lock_guard<std::mutex> l(stop_mu);
    stopping.store(true);
    if (Engine* e = running.load()) {
      if (auto* h = health.load()) h->SetServingStatus(false);
      service.SetDraining();
      const bool drained = e->Drain(std::chrono::seconds(std::max(0, f.drain_timeout_s)));
      std::fprintf(stderr, "moeserve-worker rank %d: %s; stopping the group\n", f.rank,
                   drained ? "drained" : "drain timed out");
      e->Stop();
    } else {
      std::fprintf(stderr, "moeserve-worker rank %d: stopped while starting\n", f.rank);
      std::_Exit(0);
    }
  });

  // 1. Serve: the Worker service (not ready yet) and rank 0's store.
  InMemoryKvStore local_store;
  CoordinatorService coordinator(&local_store);
  int port = 0;
  std::vector<grpc::Service*> services = {&service};
  const bool same_address = f.rank == 0 && f.coordinator == f.listen;
  if (same_address) services.push_back(&coordinator);
  // grpc.health.v1: NOT_SERVING until the group has formed and every weight
  // is loaded, and again from SIGTERM on.
  grpc::EnableDefaultHealthCheckService(true);
  auto server = Serve(f.listen, services, &port, *server_credentials, f.keepalive_s);
  if (server.ok()) {
    (*server)->GetHealthCheckService()->SetServingStatus(false);
    health.store((*server)->GetHealthCheckService());
  }
  if (!server.ok()) return Fail(server.status(), f.rank);
  const std::string listen = WithPort(f.listen, port);
  std::unique_ptr<grpc::Server> coordinator_server;
  std::string coordinator_address = same_address ? listen : f.coordinator;
  if (f.rank == 0 && f.world_size > 1) {
    if (!same_address) {
      int cport = 0;
      auto cs = Serve(f.coordinator, {&coordinator}, &cport, *server_credentials, f.keepalive_s);
      if (!cs.ok()) return Fail(cs.status(), f.rank);
      coordinator_server = std::move(*cs);
      coordinator_address = WithPort(f.coordinator, cport);
    }
    std::printf("moeserve-worker rank=0 coordinator=%s\n", coordinator_address.c_str());
    std::fflush(stdout);
  }
  std::string advertise = f.advertise;
  if (advertise.empty()) {
    advertise = IsWildcard(HostOf(listen)) ? absl::StrCat(MyHostName(), ":", port) : listen;
  }
  const std::string gloo_host = f.host.empty() ? HostOf(advertise) : f.host;

  // 2. Weights: dense ones and this rank's experts.
  auto config = LoadModelConfig(f.model);
  if (!config.ok()) return Fail(config.status(), f.rank);
  const ExpertShards shards(config->num_experts, f.world_size);
  LoadOptions load;
  load.expert_begin = shards.begin(f.rank);
  load.expert_end = shards.end(f.rank);
  auto weights = LoadModel(f.model, load);
  if (!weights.ok()) return Fail(weights.status(), f.rank);

  // 3. and 4., once per epoch: meet the peers (epoch, addresses, the
  // collective) and serve. When a peer is lost (a collective call fails, or
  // the group watch finds it gone, also while idle) this rank fails its open
  // requests with UNAVAILABLE, ends its router streams, and meets the peers
  // again under a new epoch: rank 0 proposes one, the others wait for it.
  // Weights stay loaded. A restarted rank that finds its own previous
  // incarnation registered under the current epoch waits for the next one.
  std::unique_ptr<KvStore> remote_store;
  KvStore* store = &local_store;
  const absl::Duration formation = absl::Seconds(f.formation_timeout_s);
  if (f.rank != 0) {
    auto s = ConnectCoordinator(coordinator_address, formation, *channel_credentials);
    if (!s.ok()) return Fail(s.status(), f.rank);
    remote_store = std::move(*s);
    store = remote_store.get();
  }
  EngineOptions options;
  options.prefill_chunk = f.prefill_chunk;
  options.max_step_tokens = f.max_step_tokens;
  options.max_num_seqs = f.max_num_seqs;
  options.max_waiting = f.max_waiting;
  options.block_size = f.block_size;
  options.kv_cache_bytes = f.kv_cache_bytes;
  options.prefix_caching = f.prefix_caching;
  const uint64_t resident_weight_bytes = (*weights)->resident_bytes;
  const uint64_t resident_expert_bytes = ExpertBytes(**weights);
  auto no_kv_block = [&] {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
                    "--kv-cache-bytes ", f.kv_cache_bytes, " holds no KV-cache block of ",
                    f.block_size, " positions for this model")),
                f.rank);
  };
  // The metrics read whichever epoch's engine is serving (none: up = 0).
  std::mutex current_mu;
  Engine* current_engine = nullptr;
  ExpertTraffic* current_traffic = nullptr;
  WorkerIdentity current_who;
  std::unique_ptr<MetricsServer> metrics;
  std::string metrics_address = "-";
  if (f.metrics_port >= 0) {
    auto started = MetricsServer::Start(WithPort(listen, f.metrics_port), [&](MetricSet& m) {
      std::lock_guard<std::mutex> l(current_mu);
      if (current_engine == nullptr) return FillWorkerDownMetrics(f.rank, m);
      FillWorkerMetrics(current_who, *current_engine, *current_traffic, m);
    });
    if (!started.ok()) return Fail(started.status(), f.rank);
    metrics = std::move(*started);
    metrics_address = WithPort(listen, metrics->port());
  }
  std::unique_ptr<GpuTransformer> gpu_model;
  uint64_t last_epoch = 0;
  for (bool first = true;; first = false) {
    // A failure while re-forming is waited out (the lost rank may take a
    // while to come back); at start-up it ends the process.
    auto retry = [&](const absl::Status& s, uint64_t epoch) {
      std::fprintf(stderr, "moeserve-worker rank %d: forming epoch %llu failed: %s; again\n",
                   f.rank, static_cast<unsigned long long>(epoch),
                   std::string(s.message()).c_str());
      last_epoch = std::max(last_epoch, epoch);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    };
    auto epoch_or = JoinEpoch(*store, f.rank, last_epoch,
                              first ? formation : absl::InfiniteDuration());
    if (!epoch_or.ok()) return Fail(epoch_or.status(), f.rank);
    const uint64_t epoch = *epoch_or;
    const std::string prefix = absl::StrCat("epoch/", epoch, "/");
    if (absl::Status s = store->Set(absl::StrCat(prefix, "worker/", f.rank), advertise); !s.ok()) {
      if (first) return Fail(s, f.rank);
      retry(s, epoch);
      continue;
    }
    GroupOptions group;
    group.rank = f.rank;
    group.world_size = f.world_size;
    // A GPU group exchanges device buffers through NCCL unless told otherwise
    // (gloo stages them through host memory, e.g. for ranks sharing a GPU).
    group.kind = f.collective == "auto" && f.cuda_device >= 0 && f.world_size > 1 ? "nccl"
                                                                                   : f.collective;
    group.device = std::max(f.cuda_device, 0);
    group.host = gloo_host;
    group.prefix = absl::StrCat(prefix, "collective/");
    group.timeout = absl::Seconds(f.timeout_s);
    auto collective = CreateCollective(*store, group);
    if (!collective.ok()) {
      if (first) return Fail(collective.status(), f.rank);
      retry(collective.status(), epoch);
      continue;
    }
    if ((*collective)->memory() != MemorySpace::kHost && f.cuda_device < 0) {
      return Fail(absl::FailedPreconditionError(
                      "the NCCL collective exchanges GPU buffers: it needs --device cuda:N"),
                  f.rank);
    }
    std::vector<std::string> peers(f.world_size);
    absl::Status met;
    for (int r = 0; r < f.world_size && met.ok(); ++r) {
      auto a = store->Get(absl::StrCat(prefix, "worker/", r), formation);
      if (a.ok()) peers[r] = *a;
      met = a.status();
    }
    if (met.ok()) met = (*collective)->Barrier();
    if (!met.ok()) {
      if (first) return Fail(met, f.rank);
      retry(met, epoch);
      continue;
    }

    // The engine: on the CPU, or the whole forward pass on a GPU (made once:
    // its weights live on the device; a new epoch only swaps its group).
    std::unique_ptr<ExpertParallelRunner> cpu_experts;
    std::unique_ptr<Transformer> cpu_model;
    ForwardPass* model = nullptr;
    ExpertTraffic* traffic = nullptr;
    // The exchange runs through the group whenever there is one (an explicit
    // --collective at world size 1 exercises it against itself).
    const bool exchange = f.world_size > 1 || std::string((*collective)->name()) != "local";
    if (f.cuda_device >= 0 && gpu_model) {
      if (exchange) {
        if (absl::Status s = gpu_model->set_collective(collective->get()); !s.ok()) {
          return Fail(s, f.rank);
        }
      }
    } else if (f.cuda_device >= 0) {
      const ModelConfig& c = (*weights)->config;
      GpuOptions g;
      g.device = f.cuda_device;
      g.max_batch_tokens = f.max_step_tokens;
      g.max_batch_seqs = f.max_num_seqs;
      g.kv_block_size = f.block_size;
      g.cuda_graphs = !f.enforce_eager;
      g.kv_blocks = static_cast<int>(std::min<int64_t>(
          KvBlockPool::BlocksForBytes(c.num_layers, int64_t{c.num_kv_heads} * c.head_dim,
                                      f.block_size, f.kv_cache_bytes, /*value_bytes=*/2),
          std::numeric_limits<int32_t>::max()));
      if (g.kv_blocks == 0) return no_kv_block();
      if (exchange) {
        g.collective = collective->get();
        for (int r = 0; r < f.world_size; ++r) g.rank_experts.push_back(shards.begin(r));
        g.rank_experts.push_back(shards.end(f.world_size - 1));
      }
      auto created = GpuTransformer::Create(**weights, g);
      if (!created.ok()) return Fail(created.status(), f.rank);
      gpu_model = std::move(*created);
      // Everything the engine reads now lives on the GPU.
      weights->reset();
      options.kv_cache_blocks = g.kv_blocks;
      std::printf("moeserve-worker rank=%d device=cuda:%d weights=%llu bytes kv_cache=%llu "
                  "bytes (%d blocks of %d)\n",
                  f.rank, f.cuda_device,
                  static_cast<unsigned long long>(gpu_model->weight_bytes()),
                  static_cast<unsigned long long>(gpu_model->kv_bytes()), g.kv_blocks,
                  f.block_size);
      std::fflush(stdout);
    }
    if (f.cuda_device >= 0) {
      model = gpu_model.get();
      traffic = gpu_model.get();
    } else {
      cpu_experts = std::make_unique<ExpertParallelRunner>(**weights, **collective, shards);
      cpu_model = std::make_unique<Transformer>(**weights, cpu_experts.get());
      model = cpu_model.get();
      traffic = cpu_experts.get();
    }
    Engine engine(*model, **collective, options);
    if (engine.stats().kv_blocks_total == 0) return no_kv_block();
    PeerRing ring(f.rank, epoch, peers, *channel_credentials);
    engine.set_ring([&ring](uint64_t period) { ring.Ring(period); });
    engine.set_load_listener([&service](const EngineLoad& load) { service.BroadcastLoad(load); });
    WorkerService::Identity id;
    id.rank = f.rank;
    id.world_size = f.world_size;
    id.expert_begin = shards.begin(f.rank);
    id.expert_end = shards.end(f.rank);
    id.resident_weight_bytes = resident_weight_bytes;
    id.resident_expert_bytes = resident_expert_bytes;
    id.collective = (*collective)->name();
    service.Ready(epoch, &engine, id, [traffic] { return traffic->all_to_all_seconds(); });
    engine.set_all_to_all_probe([traffic] { return traffic->all_to_all_seconds(); });
    {
      std::lock_guard<std::mutex> l(current_mu);
      current_engine = &engine;
      current_traffic = traffic;
      current_who = WorkerIdentity{f.rank, f.world_size, static_cast<int>(id.expert_begin),
                                   static_cast<int>(id.expert_end), epoch};
    }
    running.store(&engine);
    // Every rank serves before any rank watches the others.
    absl::Status serving = (*collective)->Barrier();
    std::unique_ptr<GroupWatch> watch;
    if (serving.ok()) {
      (*server)->GetHealthCheckService()->SetServingStatus(true);
      std::printf(
          "moeserve-worker ready rank=%d world=%d listen=%s experts=%d-%d "
          "resident_expert_bytes=%llu resident_weight_bytes=%llu collective=%s epoch=%llu "
          "metrics=%s\n",
          f.rank, f.world_size, listen.c_str(), id.expert_begin, id.expert_end,
          static_cast<unsigned long long>(id.resident_expert_bytes),
          static_cast<unsigned long long>(id.resident_weight_bytes), id.collective.c_str(),
          static_cast<unsigned long long>(epoch), metrics_address.c_str());
      std::fflush(stdout);
      watch = std::make_unique<GroupWatch>(f.rank, epoch, peers, *channel_credentials,
                                           [&engine](absl::Status why) {
                                             engine.Interrupt(std::move(why));
                                           });
    } else {
      engine.Interrupt(serving);
    }
    const absl::Status result = engine.Run();
    watch.reset();
    {
      // Waits for a SIGTERM handler that is draining this engine.
      std::lock_guard<std::mutex> l(stop_mu);
      running.store(nullptr);
    }
    (*server)->GetHealthCheckService()->SetServingStatus(false);
    {
      std::lock_guard<std::mutex> l(current_mu);
      current_engine = nullptr;
    }
    service.NotReady();
    if (result.ok() || stopping.load()) break;
    std::fprintf(stderr,
                 "moeserve-worker rank %d: the group of epoch %llu broke (%s); re-forming\n",
                 f.rank, static_cast<unsigned long long>(epoch),
                 std::string(result.message()).c_str());
    last_epoch = epoch;
  }
  health.store(nullptr);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  (*server)->Shutdown(deadline);
  if (coordinator_server) coordinator_server->Shutdown(deadline);
  std::fprintf(stderr, "moeserve-worker rank %d: stopped\n", f.rank);
  return 0;
}

}  // namespace moeserve
