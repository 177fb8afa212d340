#include "router/placement.h"

#include <vector>

#include "gtest/gtest.h"

namespace moeserve {
namespace router {
namespace {

WorkerLoad Load(bool connected, uint64_t reported, uint64_t placed = 0) {
  WorkerLoad w;
  w.connected = connected;
  w.reported_pending = reported;
  w.placed_since_report = placed;
  return w;
}

TEST(PlacementTest, NoWorkerIsMinusOne) {
  EXPECT_EQ(PickWorker({}), -1);
  std::vector<WorkerLoad> w = {Load(false, 0), Load(false, 0)};
  EXPECT_EQ(PickWorker(w), -1);
}

TEST(PlacementTest, DrainingWorkersAreSkipped) {
  std::vector<WorkerLoad> w = {Load(true, 100), Load(true, 30), Load(true, 50)};
  w[1].draining = true;
  EXPECT_EQ(PickWorker(w), 2);
  w[0].draining = w[2].draining = true;
  EXPECT_EQ(PickWorker(w), -1);
}

TEST(PlacementTest, LeastOutstandingWins) {
  std::vector<WorkerLoad> w = {Load(true, 100), Load(true, 30), Load(true, 50)};
  EXPECT_EQ(PickWorker(w), 1);
}

TEST(PlacementTest, PlacedSinceReportCounts) {
  // Worker 1 reported less, but this router has since placed 80 tokens on it.
  std::vector<WorkerLoad> w = {Load(true, 100), Load(true, 30, 80), Load(true, 105)};
  EXPECT_EQ(PickWorker(w), 0);
}

TEST(PlacementTest, TieGoesToLowestIndex) {
  std::vector<WorkerLoad> w = {Load(true, 40, 10), Load(true, 50), Load(true, 20, 30)};
  EXPECT_EQ(PickWorker(w), 0);
}

TEST(PlacementTest, DisconnectedWorkersAreSkipped) {
  std::vector<WorkerLoad> w = {Load(false, 0), Load(true, 500), Load(false, 0), Load(true, 400)};
  EXPECT_EQ(PickWorker(w), 3);
}

TEST(PlacementTest, RequestWorkIsPromptPlusMaxTokens) {
  EXPECT_EQ(RequestWork(10, 16), 26u);
  EXPECT_EQ(RequestWork(0, 4000000000u), 4000000000u);
}

}  // namespace
}  // namespace router
}  // namespace moeserve
