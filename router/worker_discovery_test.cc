#include "router/worker_discovery.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/fake_worker_connection.h"

namespace moeserve {
namespace router {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

TEST(SplitHostPortTest, Forms) {
  std::string host, port;
  ASSERT_TRUE(SplitHostPort("worker-0.workers:7000", &host, &port).ok());
  EXPECT_EQ(host, "worker-0.workers");
  EXPECT_EQ(port, "7000");
  ASSERT_TRUE(SplitHostPort("[::1]:7000", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(SplitHostPort("nohost", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort(":7000", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("h:port", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("h:70000", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("::1:7000", &host, &port).ok());
  EXPECT_EQ(JoinHostPort("::1", "7"), "[::1]:7");
  EXPECT_EQ(JoinHostPort("10.0.0.1", "7"), "10.0.0.1:7");
}

TEST(ParseWorkerListTest, ListAndErrors) {
  auto list = ParseWorkerList(" a:1, b:2 ,a:1,");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(*list, ElementsAre("a:1", "b:2"));
  EXPECT_FALSE(ParseWorkerList("").ok());
  EXPECT_FALSE(ParseWorkerList("a:0").ok());
  auto bad = ParseWorkerList("a:1,b");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("--workers"));
}

TEST(SystemResolverTest, LocalhostIsOneAddress) {
  auto ips = SystemResolver()("localhost");
  ASSERT_TRUE(ips.ok()) << ips.status();
  EXPECT_EQ(ips->size(), 1u);
  auto literal = SystemResolver()("127.0.0.1");
  ASSERT_TRUE(literal.ok());
  EXPECT_THAT(*literal, ElementsAre("127.0.0.1"));
}

class DiscoveryTest : public ::testing::Test {
 protected:
  WorkerDiscovery::Factory Factory() {
    return [this](const std::string& address) {
      auto w = std::make_unique<FakeWorkerConnection>(address);
      made_[address] = w.get();
      return w;
    };
  }
  Resolver Scripted() {
    return [this](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
      ++resolves_;
      if (!dns_ok_) return absl::UnavailableError("SERVFAIL");
      EXPECT_EQ(host, "workers.svc");
      return dns_;
    };
  }

  WorkerPool pool_;
  std::map<std::string, FakeWorkerConnection*> made_;
  std::vector<std::string> dns_;
  bool dns_ok_ = true;
  int resolves_ = 0;
};

TEST_F(DiscoveryTest, FixedListIsUsedAsIs) {
  WorkerDiscovery d({"a:1", "b:2"}, Scripted(), Factory(), &pool_);
  EXPECT_FALSE(d.dns_mode());
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_THAT(pool_.addresses(), ElementsAre("a:1", "b:2"));
  EXPECT_EQ(resolves_, 0);
  EXPECT_TRUE(made_["a:1"]->started());
}

TEST_F(DiscoveryTest, SingleIpIsNotResolved) {
  WorkerDiscovery d({"10.1.2.3:7000"}, Scripted(), Factory(), &pool_);
  EXPECT_FALSE(d.dns_mode());
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_THAT(pool_.addresses(), ElementsAre("10.1.2.3:7000"));
}

TEST_F(DiscoveryTest, HeadlessServiceFollowsDns) {
  WorkerDiscovery d({"workers.svc:7000"}, Scripted(), Factory(), &pool_);
  ASSERT_TRUE(d.dns_mode());
  dns_ = {"10.0.0.1", "10.0.0.2"};
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_THAT(pool_.addresses(), ElementsAre("10.0.0.1:7000", "10.0.0.2:7000"));

  // A new pod appears; one disappears while still connected (kept) and one
  // disappears disconnected (dropped).
  made_["10.0.0.1:7000"]->Connect(0, 2);
  dns_ = {"10.0.0.3", "fd00::4"};
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_THAT(pool_.addresses(),
              UnorderedElementsAre("10.0.0.1:7000", "10.0.0.3:7000", "[fd00::4]:7000"));

  // A failed resolution changes nothing.
  dns_ok_ = false;
  EXPECT_FALSE(d.Refresh().ok());
  EXPECT_EQ(pool_.addresses().size(), 3u);

  // Once disconnected, the vanished one goes.
  dns_ok_ = true;
  made_["10.0.0.1:7000"]->Disconnect(absl::UnavailableError("pod deleted"));
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_THAT(pool_.addresses(), UnorderedElementsAre("10.0.0.3:7000", "[fd00::4]:7000"));
}

TEST_F(DiscoveryTest, BackgroundRefresh) {
  WorkerDiscovery d({"workers.svc:7000"}, Scripted(), Factory(), &pool_);
  dns_ = {"10.0.0.1"};
  d.Start(absl::Milliseconds(10));
  for (int i = 0; i < 500 && pool_.addresses().empty(); ++i) absl::SleepFor(absl::Milliseconds(10));
  d.Stop();
  EXPECT_THAT(pool_.addresses(), ElementsAre("10.0.0.1:7000"));
}

}  // namespace
}  // namespace router
}  // namespace moeserve
