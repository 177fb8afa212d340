// `moeserve local`: a whole cluster on this machine. Starts N workers and a
// router as child processes of this binary (`moeserve worker` / `moeserve
// router`) on loopback, prints `moeserve ready grpc=HOST:PORT` when the
// group has formed and every weight is loaded, and on SIGINT/SIGTERM stops
// them all (router first, so clients get clean endings), leaving no orphan:
// every child is in its own process group with SIGTERM as its
// parent-death signal.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cli_flags.h"
#include "tools/child_process.h"
#include "tools/commands.h"

namespace moeserve {
namespace {

struct LocalFlags {
  std::string model;
  int workers = 1;
  int grpc_port = 50051;
  int http_port = -1;
  int drain_timeout_s = 30;
  int keepalive_s = 10;
  std::string tls_cert, tls_key, api_key_file;
  std::string internal_cert, internal_key, internal_ca;
  int metrics_port = -1;
  std::string host = "127.0.0.1";
  int threads_per_worker = 0;
  std::string collective = "auto";
  std::string device = "cpu";
  bool enforce_eager = false;
  std::string chat_format;
  int startup_timeout_s = 600;
  int worker_timeout_s = 30;
  int max_num_seqs = 256;
  int max_waiting = 1024;
  int max_num_batched_tokens = 2048;
  int block_size = 16;
  int64_t kv_cache_bytes = int64_t{1} << 30;
  bool prefix_caching = true;
};

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : "moeserve";
}

// The value of `key=` in a ready line.
std::string Field(const std::string& line, const std::string& key) {
  const std::string k = key + "=";
  size_t at = line.find(" " + k);
  if (at == std::string::npos) return "";
  at += k.size() + 1;
  return line.substr(at, line.find(' ', at) - at);
}

// The --device of worker `rank`: "cuda" spreads the ranks over GPUs 0, 1, ...
std::string DeviceOf(const std::string& device, int rank) {
  return device == "cuda" ? "cuda:" + std::to_string(rank) : device;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "moeserve local: %s\n", message.c_str());
  return 1;
}

}  // namespace

int LocalCommand(int argc, char** argv) {
  LocalFlags f;
  FlagSet flags("moeserve local",
                "Run a cluster on this machine: N expert-parallel workers and a router, on "
                "loopback. Prints `moeserve ready grpc=HOST:PORT` when it can serve; stop it "
                "with Ctrl-C or SIGTERM.");
  flags.String("model", &f.model, "DIR", "Hugging Face checkpoint directory.");
  flags.Int("workers", &f.workers, "N", "Worker processes (expert-parallel ranks).");
  flags.Int("grpc-port", &f.grpc_port, "P", "The router's gRPC port (0: any free port).");
  flags.Int("metrics-port", &f.metrics_port, "P",
            "Serve Prometheus metrics: the router on P, worker r on P+1+r (0: free ports; "
            "default: off). Prints `moeserve metrics router=ADDR workers=ADDR,...` before the "
            "ready line.");
  flags.String("tls-cert", &f.tls_cert, "PEM",
               "The router serves gRPC and HTTP over TLS with this certificate (needs --tls-key).");
  flags.String("tls-key", &f.tls_key, "PEM", "The private key of --tls-cert.");
  flags.String("internal-tls-cert", &f.internal_cert, "PEM",
               "Mutual TLS between the router and the workers and among workers: the "
               "certificate every process presents (with --internal-tls-key/-ca).");
  flags.String("internal-tls-key", &f.internal_key, "PEM", "Its private key.");
  flags.String("internal-tls-ca", &f.internal_ca, "PEM", "The CA every peer must chain to.");
  flags.String("api-key-file", &f.api_key_file, "PATH",
               "The router requires one of these API keys (see moeserve router --help).");
  flags.Int("drain-timeout", &f.drain_timeout_s, "SECONDS",
            "On Ctrl-C/SIGTERM the router refuses new requests and lets those in flight finish "
            "for up to this long before the workers stop.");
  flags.Int("keepalive", &f.keepalive_s, "SECONDS",
            "The router and the workers ping a silent connection after this long and drop it "
            "when the ping goes unanswered for as long (0: off).");
  flags.Int("http-port", &f.http_port, "P",
            "Also serve the OpenAI-compatible HTTP API on this port (0: any free port; "
            "default: off). Prints `moeserve http=HOST:PORT` before the ready line.");
  flags.String("host", &f.host, "HOST", "Address to serve on (loopback by default).");
  flags.Int("threads-per-worker", &f.threads_per_worker, "N",
            "CPU threads of each worker (0: the cores divided among the workers).");
  flags.String("collective", &f.collective, "KIND",
               "Workers' collective: auto, gloo, local, nccl.");
  flags.String("device", &f.device, "DEV",
               "cpu; cuda (rank r on GPU r, NCCL between them); or cuda:N (every rank on GPU "
               "N, exchanging through gloo).");
  flags.Bool("enforce-eager", &f.enforce_eager,
             "GPU workers launch every kernel eagerly (no CUDA graphs for decode steps).");
  flags.String("chat-format", &f.chat_format, "NAME",
               "Chat format for the router instead of detecting the template.");
  flags.Int("startup-timeout", &f.startup_timeout_s, "SECONDS",
            "Longest wait for the cluster to become ready.");
  flags.Int("max-num-seqs", &f.max_num_seqs, "N",
            "Each worker's requests scheduled together; later ones wait.");
  flags.Int("max-waiting", &f.max_waiting, "N",
            "Each worker's waiting requests beyond --max-num-seqs; more: RESOURCE_EXHAUSTED.");
  flags.Int("max-num-batched-tokens", &f.max_num_batched_tokens, "N",
            "Each worker's tokens per step (decode tokens and prefill chunks together).");
  flags.Int("block-size", &f.block_size, "N", "Positions per KV-cache block.");
  flags.Int64("kv-cache-bytes", &f.kv_cache_bytes, "BYTES", "Each worker's KV-cache memory.");
  flags.Bool("enable-prefix-caching", &f.prefix_caching,
             "Workers share the KV blocks of common prompt prefixes.");
  flags.Int("worker-timeout", &f.worker_timeout_s, "SECONDS",
            "Workers' collective timeout (a lost rank is noticed within it).");
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "moeserve local: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (f.model.empty()) {
    std::fprintf(stderr, "moeserve local: --model DIR is required\n");
    return 2;
  }
  if (f.workers < 1 || f.workers > 64) {
    std::fprintf(stderr, "moeserve local: --workers must be in [1, 64], got %d\n", f.workers);
    return 2;
  }
  if (f.grpc_port < 0 || f.grpc_port > 65535) {
    std::fprintf(stderr, "moeserve local: --grpc-port must be in [0, 65535]\n");
    return 2;
  }
  int threads = f.threads_per_worker;
  if (threads <= 0) {
    threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / f.workers);
  }

  // SIGINT/SIGTERM are taken with sigwait; children get a clean mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto interrupted = [&] {
    timespec zero{0, 0};
    return sigtimedwait(&stop_signals, nullptr, &zero) > 0;
  };

  const std::string exe = SelfExe();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(f.startup_timeout_s);
  std::vector<std::unique_ptr<ChildProcess>> workers;
  std::unique_ptr<ChildProcess> router;
  auto stop_all = [&] {
    if (router) router->Stop(std::chrono::seconds(f.drain_timeout_s + 10));
    for (auto& w : workers) {
      if (!w->Exited(nullptr)) ::kill(w->pid(), SIGTERM);  // never a reaped (reusable) pid
    }
    for (auto& w : workers) w->Stop(std::chrono::seconds(10));
  };
  auto startup_failed = [&](const absl::Status& s) {
    stop_all();
    if (s.code() == absl::StatusCode::kCancelled) return 0;  // Ctrl-C while starting
    return Fail(std::string(s.message()));
  };

  // Ranks sharing one GPU cannot use NCCL (one rank per GPU): they exchange
  // through gloo unless --collective says otherwise.
  const std::string collective =
      f.collective == "auto" && f.device.rfind("cuda:", 0) == 0 && f.workers > 1 ? "gloo"
                                                                                  : f.collective;
  std::string coordinator;
  std::vector<std::string> addresses, worker_metrics;
  std::vector<std::vector<std::string>> worker_args;  // to restart a worker as it was
  for (int rank = 0; rank < f.workers; ++rank) {
    std::vector<std::string> args = {exe,
                                     "worker",
                                     "--rank=" + std::to_string(rank),
                                     "--world-size=" + std::to_string(f.workers),
                                     "--model=" + f.model,
                                     "--listen=" + f.host + ":0",
                                     "--threads=" + std::to_string(threads),
                                     "--collective=" + collective,
                                     "--device=" + DeviceOf(f.device, rank),
                                     "--timeout=" + std::to_string(f.worker_timeout_s),
                                     "--drain-timeout=" + std::to_string(f.drain_timeout_s),
                                     "--keepalive=" + std::to_string(f.keepalive_s),
                                     "--max-num-seqs=" + std::to_string(f.max_num_seqs),
                                     "--max-waiting=" + std::to_string(f.max_waiting),
                                     "--max-num-batched-tokens=" +
                                         std::to_string(f.max_num_batched_tokens),
                                     "--block-size=" + std::to_string(f.block_size),
                                     "--kv-cache-bytes=" + std::to_string(f.kv_cache_bytes),
                                     std::string(f.prefix_caching
                                                     ? "--enable-prefix-caching"
                                                     : "--no-enable-prefix-caching"),
                                     "--coordinator=" +
                                         (rank == 0 ? f.host + ":0" : coordinator)};
    if (f.enforce_eager) args.push_back("--enforce-eager");
    if (!f.internal_cert.empty()) {
      args.push_back("--tls-cert=" + f.internal_cert);
      args.push_back("--tls-key=" + f.internal_key);
      args.push_back("--tls-ca=" + f.internal_ca);
    }
    if (f.metrics_port >= 0) {
      args.push_back("--metrics-port=" +
                     std::to_string(f.metrics_port == 0 ? 0 : f.metrics_port + 1 + rank));
    }
    auto child = ChildProcess::Spawn(absl::StrCat("worker rank ", rank), args);
    if (!child.ok()) return startup_failed(child.status());
    workers.push_back(std::move(*child));
    worker_args.push_back(args);
    if (rank == 0 && f.workers > 1) {
      auto line = workers[0]->WaitForLine("moeserve-worker rank=0 coordinator=", deadline,
                                          interrupted);
      if (!line.ok()) return startup_failed(line.status());
      coordinator = line->substr(line->find("coordinator=") + 12);
    }
  }
  for (auto& w : workers) {
    auto line = w->WaitForLine("moeserve-worker ready", deadline, interrupted);
    if (!line.ok()) return startup_failed(line.status());
    addresses.push_back(Field(*line, "listen"));
    worker_metrics.push_back(Field(*line, "metrics"));
    std::fprintf(stderr, "moeserve local: %s\n", line->c_str());
  }

  std::vector<std::string> router_args = {exe, "router",
                                          "--listen=" + f.host + ":" + std::to_string(f.grpc_port),
                                          "--workers=" + absl::StrJoin(addresses, ","),
                                          "--model=" + f.model};
  if (!f.chat_format.empty()) router_args.push_back("--chat-format=" + f.chat_format);
  if (f.http_port >= 0) router_args.push_back("--http-port=" + std::to_string(f.http_port));
  router_args.push_back("--drain-timeout=" + std::to_string(f.drain_timeout_s));
  router_args.push_back("--keepalive=" + std::to_string(f.keepalive_s));
  if (!f.tls_cert.empty()) router_args.push_back("--tls-cert=" + f.tls_cert);
  if (!f.tls_key.empty()) router_args.push_back("--tls-key=" + f.tls_key);
  if (!f.api_key_file.empty()) router_args.push_back("--api-key-file=" + f.api_key_file);
  if (!f.internal_cert.empty()) {
    router_args.push_back("--worker-tls-cert=" + f.internal_cert);
    router_args.push_back("--worker-tls-key=" + f.internal_key);
    router_args.push_back("--worker-tls-ca=" + f.internal_ca);
  }
  if (f.metrics_port >= 0) {
    router_args.push_back("--metrics-port=" + std::to_string(f.metrics_port));
  }
  auto child = ChildProcess::Spawn("router", router_args);
  if (!child.ok()) return startup_failed(child.status());
  router = std::move(*child);
  auto line = router->WaitForLine("moeserve-router ready", deadline, interrupted);
  if (!line.ok()) return startup_failed(line.status());
  for (auto& w : workers) w->ForwardOutput();
  router->ForwardOutput();
  if (f.http_port >= 0) std::printf("moeserve http=%s\n", Field(*line, "http").c_str());
  if (f.metrics_port >= 0) {
    std::printf("moeserve metrics router=%s workers=%s\n", Field(*line, "metrics").c_str(),
                absl::StrJoin(worker_metrics, ",").c_str());
  }
  std::printf("moeserve ready grpc=%s\n", Field(*line, "grpc").c_str());
  std::fflush(stdout);

  // A worker that dies is started again as it was, on the same ports (the
  // router and its peers know it by address; rank 0 keeps its store's port),
  // and the survivors re-form the group with it under a new epoch. Restarts
  // of one rank back off from 1 s to 30 s while it keeps dying within a
  // minute of starting.
  for (int rank = 0; rank < f.workers; ++rank) {
    const std::string port_of_listen = addresses[rank].substr(addresses[rank].rfind(':') + 1);
    for (std::string& a : worker_args[rank]) {
      if (a.rfind("--listen=", 0) == 0) a = "--listen=" + f.host + ":" + port_of_listen;
      if (rank == 0 && a.rfind("--coordinator=", 0) == 0) {
        a = "--coordinator=" + f.host + ":" + port_of_listen;  // its store on the same port
      }
      if (a.rfind("--metrics-port=", 0) == 0 && worker_metrics[rank] != "-") {
        a = "--metrics-port=" + worker_metrics[rank].substr(worker_metrics[rank].rfind(':') + 1);
      }
    }
  }
  struct Restarts {
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point due;  // while down
    std::chrono::seconds backoff{1};
    bool down = false;
  };
  std::vector<Restarts> restarts(f.workers);
  // Serve until a signal, or until the router dies on its own.
  while (true) {
    timespec tick{0, 100 * 1000 * 1000};
    if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) {
      std::fprintf(stderr, "moeserve local: stopping\n");
      stop_all();
      return 0;
    }
    int status = 0;
    if (router->Exited(&status)) {
      const std::string what = absl::StrCat("the router exited (", DescribeWaitStatus(status),
                                            "); stopping the workers");
      stop_all();
      return Fail(what);
    }
    const auto now = std::chrono::steady_clock::now();
    for (int rank = 0; rank < f.workers; ++rank) {
      Restarts& r = restarts[rank];
      if (!r.down && workers[rank]->Exited(&status)) {
        if (now - r.started > std::chrono::minutes(1)) r.backoff = std::chrono::seconds(1);
        std::fprintf(stderr, "moeserve local: worker rank %d exited (%s); restarting it in %lld s\n",
                     rank, DescribeWaitStatus(status).c_str(),
                     static_cast<long long>(r.backoff.count()));
        r.down = true;
        r.due = now + r.backoff;
        r.backoff = std::min(r.backoff * 2, std::chrono::seconds(30));
      }
      if (r.down && now >= r.due) {
        auto child = ChildProcess::Spawn(absl::StrCat("worker rank ", rank), worker_args[rank]);
        if (!child.ok()) {
          std::fprintf(stderr, "moeserve local: restarting worker rank %d failed: %s\n", rank,
                       std::string(child.status().message()).c_str());
          r.due = now + r.backoff;
          continue;
        }
        workers[rank] = std::move(*child);
        workers[rank]->ForwardOutput();
        r.started = now;
        r.down = false;
        std::fprintf(stderr, "moeserve local: worker rank %d restarted (pid %d)\n", rank,
                     static_cast<int>(workers[rank]->pid()));
      }
    }
  }
}

}  // namespace moeserve
