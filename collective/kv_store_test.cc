// InMemoryKvStore, and the same contract through the gRPC coordinator
// (CoordinatorService on 127.0.0.1, port 0, and ConnectCoordinator).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "collective/coordinator.h"
#include "collective/in_memory_kv_store.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace moeserve {
namespace {

// The checks every KvStore must pass.
void CheckStore(KvStore& store) {
  // Set then Get; Set replaces.
  ASSERT_TRUE(store.Set("a", "1").ok());
  ASSERT_TRUE(store.Set("a", std::string("x\0y", 3)).ok());
  absl::StatusOr<std::string> a = store.Get("a", absl::Seconds(1));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, std::string("x\0y", 3));

  // Get waits for a Set from another thread.
  std::thread setter([&store] {
    absl::SleepFor(absl::Milliseconds(200));
    ASSERT_TRUE(store.Set("late", "here").ok());
  });
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> late = store.Get("late", absl::Seconds(10));
  const absl::Duration waited = absl::Now() - start;
  setter.join();
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(*late, "here");
  EXPECT_GE(waited, absl::Milliseconds(150));
  EXPECT_LT(waited, absl::Seconds(5));

  // Add counts from 0, and Get sees the number.
  absl::StatusOr<int64_t> n = store.Add("n", 5);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5);
  n = store.Add("n", -7);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, -2);
  absl::StatusOr<std::string> n_text = store.Get("n", absl::Seconds(1));
  ASSERT_TRUE(n_text.ok()) << n_text.status();
  EXPECT_EQ(*n_text, "-2");
  EXPECT_EQ(store.Add("a", 1).status().code(), absl::StatusCode::kInvalidArgument);

  // A key never set: DEADLINE_EXCEEDED naming it, after about the timeout.
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::string> missing = store.Get("missing/key", absl::Milliseconds(300));
  const absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDeadlineExceeded) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "missing/key")) << missing.status();
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST(InMemoryKvStoreTest, Contract) {
  InMemoryKvStore store;
  CheckStore(store);
}

// A coordinator server on 127.0.0.1 with a port chosen by the system.
struct Server {
  explicit Server(int port = 0) : service(&store) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                             &this->port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
  }
  ~Server() { server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1)); }
  std::string target() const { return absl::StrCat("127.0.0.1:", port); }

  InMemoryKvStore store;
  CoordinatorService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

TEST(CoordinatorTest, ContractOverGrpc) {
  Server server;
  ASSERT_NE(server.server, nullptr);
  ASSERT_GT(server.port, 0);
  absl::StatusOr<std::unique_ptr<KvStore>> client =
      ConnectCoordinator(server.target(), absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  CheckStore(**client);
  // The client and the server's own store are one store.
  ASSERT_TRUE(server.store.Set("from/server", "s").ok());
  absl::StatusOr<std::string> v = (*client)->Get("from/server", absl::Seconds(1));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "s");
  absl::StatusOr<std::string> w = server.store.Get("a", absl::Seconds(1));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, std::string("x\0y", 3));
}

// A free port on 127.0.0.1: bind a socket to port 0, read it, let it go.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

TEST(CoordinatorTest, ClientStartedBeforeServerWaitsForIt) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::string target = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<KvStore>> client;
  std::thread connecting([&] { client = ConnectCoordinator(target, absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(700));  // the client is retrying by now
  Server server(port);
  ASSERT_EQ(server.port, port);
  connecting.join();
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(server.store.Set("k", "v").ok());
  absl::StatusOr<std::string> v = (*client)->Get("k", absl::Seconds(5));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "v");
}

TEST(CoordinatorTest, GetRetriesUntilServerComesUp) {
  // The server goes away and a new one comes up on the same port while a
  // Get waits: the Get reaches the new server and sees the value set there.
  auto server = std::make_unique<Server>();
  const int port = server->port;
  absl::StatusOr<std::unique_ptr<KvStore>> client =
      ConnectCoordinator(server->target(), absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  server.reset();
  absl::StatusOr<std::string> v;
  std::thread getter([&] { v = (*client)->Get("restarted", absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(500));
  server = std::make_unique<Server>(port);
  ASSERT_EQ(server->port, port);
  ASSERT_TRUE(server->store.Set("restarted", "yes").ok());
  getter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "yes");
}

TEST(CoordinatorTest, UnreachableAndMissingKeyErrorsNameTargetAndKey) {
  const int port = FreePort();
  const std::string target = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<KvStore>> none =
      ConnectCoordinator(target, absl::Milliseconds(300));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable) << none.status();
  EXPECT_TRUE(absl::StrContains(none.status().message(), target)) << none.status();
  EXPECT_EQ(ConnectCoordinator("", absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);

  Server server;
  absl::StatusOr<std::unique_ptr<KvStore>> client =
      ConnectCoordinator(server.target(), absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::string> v = (*client)->Get("never/set", absl::Milliseconds(400));
  const absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
  EXPECT_TRUE(absl::StrContains(v.status().message(), "never/set")) << v.status();
  EXPECT_TRUE(absl::StrContains(v.status().message(), server.target())) << v.status();
  EXPECT_GE(took, absl::Milliseconds(350));
  EXPECT_LT(took, absl::Seconds(3));

  // The server goes away: a Get fails with UNAVAILABLE naming the target.
  server.server->Shutdown();
  absl::StatusOr<std::string> gone = (*client)->Get("never/set", absl::Milliseconds(400));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnavailable) << gone.status();
  EXPECT_TRUE(absl::StrContains(gone.status().message(), server.target())) << gone.status();
}

}  // namespace
}  // namespace moeserve
