// StreamSink: the engine's RequestSink for one router stream. Deliver and
// Send queue messages; a writer thread writes them to the stream (merging
// the TokenBatches that piled up into one message). Close() stops the
// writer after it has written what is queued; later messages are dropped.
#ifndef MOESERVE_WORKER_STREAM_SINK_H_
#define MOESERVE_WORKER_STREAM_SINK_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "moeserve/internal/v1/worker.grpc.pb.h"
#include "worker/engine.h"

namespace moeserve {

class StreamSink : public RequestSink {
 public:
  using Stream =
      grpc::ServerReaderWriter<internal::v1::WorkerMessage, internal::v1::RouterMessage>;

  // `stream` must stay valid until Close() returns.
  StreamSink(uint64_t epoch, Stream* stream);
  ~StreamSink() override;

  void Deliver(std::vector<RequestUpdate> updates) override;
  void Send(internal::v1::WorkerMessage message);  // epoch filled in
  // A terminal for a request the engine never took (it refused it).
  void Refuse(uint64_t request_id, const absl::Status& status);
  void Close();

 private:
  void WriteLoop();

  const uint64_t epoch_;
  Stream* stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<internal::v1::WorkerMessage> queue_;
  bool closed_ = false;
  std::thread writer_;
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_STREAM_SINK_H_
