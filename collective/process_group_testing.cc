#include "collective/process_group_testing.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "collective/coordinator.h"
#include "collective/in_memory_kv_store.h"
#include "grpcpp/grpcpp.h"

namespace moeserve {
namespace {

int Fail(int rank, const std::string& what) {
  std::fprintf(stderr, "[rank %d] %s\n", rank, what.c_str());
  return 2;
}

// Reads the coordinator's port from the pipe, waiting up to `limit`.
int ReadPort(int fd, absl::Duration limit) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(limit))) != 1) return -1;
  int port = -1;
  return read(fd, &port, sizeof(port)) == sizeof(port) ? port : -1;
}

int RankMain(GroupOptions o, int port_read, int port_write,
             const std::function<int(Collective&, KvStore&)>& body) {
  std::unique_ptr<KvStore> client;
  InMemoryKvStore local_store;
  std::unique_ptr<CoordinatorService> service;
  std::unique_ptr<grpc::Server> server;
  KvStore* store = &local_store;
  if (o.rank == 0) {
    close(port_read);
    service = std::make_unique<CoordinatorService>(&local_store);
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    if (server == nullptr || port <= 0) return Fail(0, "cannot start the coordinator");
    for (int r = 1; r < o.world_size; ++r) {
      if (write(port_write, &port, sizeof(port)) != sizeof(port)) return Fail(0, "pipe write");
    }
    close(port_write);
  } else {
    close(port_write);
    const int port = ReadPort(port_read, o.timeout);
    close(port_read);
    if (port <= 0) return Fail(o.rank, "no coordinator port from rank 0");
    auto connected = ConnectCoordinator(absl::StrCat("127.0.0.1:", port), o.timeout);
    if (!connected.ok()) return Fail(o.rank, connected.status().ToString());
    client = *std::move(connected);
    store = client.get();
  }
  absl::StatusOr<std::unique_ptr<Collective>> c = CreateCollective(*store, o);
  if (!c.ok()) return Fail(o.rank, absl::StrCat("CreateCollective: ", c.status().ToString()));
  const int code = body(**c, *store);
  c->reset();
  if (server != nullptr)
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return code;
}

[[noreturn]] void ExitChild(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);  // no atexit handlers: they belong to the parent's test runner
}

// Waits for all `pids` until `limit`, then kills the rest; their exit codes.
std::vector<int> Reap(const std::vector<pid_t>& pids, absl::Duration limit) {
  std::vector<int> codes(pids.size(), -1);
  const absl::Time deadline = absl::Now() + limit;
  size_t left = pids.size();
  while (left > 0 && absl::Now() < deadline) {
    for (size_t i = 0; i < pids.size(); ++i) {
      int status = 0;
      if (codes[i] != -1 || waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      --left;
    }
    if (left > 0) absl::SleepFor(absl::Milliseconds(10));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (codes[i] != -1) continue;
    kill(pids[i], SIGKILL);
    waitpid(pids[i], nullptr, 0);
    codes[i] = kKilled;
  }
  return codes;
}

}  // namespace

std::vector<int> RunProcessGroup(const GroupOptions& o, absl::Duration limit,
                                 const std::function<int(Collective&, KvStore&)>& body) {
  int fds[2];
  if (pipe(fds) != 0) return std::vector<int>(o.world_size, -2);
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int r = 0; r < o.world_size; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      std::vector<int> codes = Reap(pids, absl::ZeroDuration());
      codes.resize(o.world_size, -3);
      return codes;
    }
    if (pid == 0) {
      // As moeserve-worker: a write to a dead peer's socket must be an
      // error (EPIPE), not the end of the process.
      signal(SIGPIPE, SIG_IGN);
      GroupOptions mine = o;
      mine.rank = r;
      ExitChild(RankMain(mine, fds[0], fds[1], body));
    }
    pids.push_back(pid);
  }
  close(fds[0]);
  close(fds[1]);
  return Reap(pids, limit);
}

int RunInChild(absl::Duration limit, const std::function<int()>& fn) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) return -3;
  if (pid == 0) ExitChild(fn());
  return Reap({pid}, limit)[0];
}

}  // namespace moeserve
