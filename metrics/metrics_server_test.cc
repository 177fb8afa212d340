#include "metrics/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace moeserve {
namespace {

TEST(Histogram, BucketsAreUpperInclusive) {
  Histogram h({0.1, 1.0});
  h.Observe(0.1);
  h.Observe(0.5, 2);
  h.Observe(7);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{1, 2, 1}));
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 8.1);
  EXPECT_EQ(Histogram::TokenCountBuckets().front(), 1);
  EXPECT_EQ(Histogram::TokenCountBuckets().back(), 1e6);
}

TEST(MetricSet, TextFormatJoinsLabelsIntoFamilies) {
  MetricSet m;
  m.Counter("moeserve_request_success_total", "Finished requests.", 3, {{"finished_reason", "stop"}});
  m.Counter("moeserve_request_success_total", "Finished requests.", 1,
            {{"finished_reason", "length"}});
  m.Gauge("moeserve_num_requests_running", "Running.", 2);
  Histogram h({0.1, 1.0});
  h.Observe(0.05);
  h.Observe(3);
  m.Histogram("moeserve_time_to_first_token_seconds", "TTFT.", h);
  const std::string text = m.Text();
  EXPECT_NE(text.find("# TYPE moeserve_request_success_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("moeserve_request_success_total{finished_reason=\"stop\"} 3"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("moeserve_request_success_total{finished_reason=\"length\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("moeserve_num_requests_running 2"), std::string::npos);
  EXPECT_NE(text.find("moeserve_time_to_first_token_seconds_bucket{le=\"0.1\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("moeserve_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("moeserve_time_to_first_token_seconds_count 2"), std::string::npos);
}

std::string Get(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
  send(fd, req.data(), req.size(), 0);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, n);
  close(fd);
  return out;
}

TEST(MetricsServer, ServesWhatTheFillFunctionReportsAtEachScrape) {
  int scrapes = 0;
  auto server = MetricsServer::Start("127.0.0.1:0", [&scrapes](MetricSet& m) {
    ++scrapes;
    m.Counter("moeserve_scrapes_total", "Scrapes so far.", scrapes);
  });
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_NE(Get((*server)->port(), "/metrics").find("moeserve_scrapes_total 1"),
            std::string::npos);
  EXPECT_NE(Get((*server)->port(), "/metrics").find("moeserve_scrapes_total 2"),
            std::string::npos);
  // The port is taken: a second server there fails with a clear status.
  auto clash = MetricsServer::Start("127.0.0.1:" + std::to_string((*server)->port()),
                                    [](MetricSet&) {});
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace moeserve
