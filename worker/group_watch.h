// GroupWatch: notices that a peer of this rank's group is gone, also while
// the group is idle (when no collective call would find out).
//
//   GroupWatch watch(rank, epoch, peers, credentials,
//                    [&](absl::Status why) { engine.Interrupt(why); });
//
// A thread asks every other rank's Worker.GetStatus every `period`. A peer
// that answers from another epoch is lost at once; one that says its group
// is not formed or cannot be reached (UNAVAILABLE: its process is gone, so
// its port refuses) twice in a row is lost, as is one that fails to answer
// `misses` times in a row (each call
// has a deadline of 2 * period, at least 1 s). `on_lost` is then called
// once, on the watch's thread, naming the rank and why. Start it once every
// rank serves the group (after a barrier that follows WorkerService::Ready). The destructor stops
// and joins the thread (at most one call's deadline).
#ifndef MOESERVE_WORKER_GROUP_WATCH_H_
#define MOESERVE_WORKER_GROUP_WATCH_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "moeserve/internal/v1/worker.grpc.pb.h"

namespace moeserve {

class GroupWatch {
 public:
  // `peers[r]` is rank r's Worker service; this rank's entry is skipped.
  // `credentials`: plaintext when null.
  GroupWatch(int rank, uint64_t epoch, const std::vector<std::string>& peers,
             std::shared_ptr<grpc::ChannelCredentials> credentials,
             std::function<void(absl::Status)> on_lost,
             std::chrono::milliseconds period = std::chrono::milliseconds(300), int misses = 5);
  ~GroupWatch();
  GroupWatch(const GroupWatch&) = delete;
  GroupWatch& operator=(const GroupWatch&) = delete;

 private:
  void Loop();
  // OK, or why rank r is lost (after this call's answer or miss).
  absl::Status Check(int r);

  const int rank_;
  const uint64_t epoch_;
  const std::chrono::milliseconds period_;
  const int misses_;
  std::function<void(absl::Status)> on_lost_;
  std::vector<std::unique_ptr<internal::v1::Worker::Stub>> peers_;  // null for self
  std::vector<int> missed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_GROUP_WATCH_H_
