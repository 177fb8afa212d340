// WorkerService: moeserve.internal.v1.Worker on a worker's --listen address.
//
// Before Ready() (the group is forming, weights loading) Connect ends with
// UNAVAILABLE and GetStatus says so. After it, each Connect stream is one
// router: its Submits go to the Engine, and a per-stream writer thread sends
// the engine's TokenBatches (one message per step) and the rank's
// LoadReports back, so the engine thread never blocks on a slow router. When
// the stream ends for any reason, the engine frees every request that came
// on it. Messages whose epoch is not the group's end the stream with
// FAILED_PRECONDITION.
#ifndef MOESERVE_WORKER_WORKER_SERVICE_H_
#define MOESERVE_WORKER_WORKER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "moeserve/internal/v1/worker.grpc.pb.h"
#include "worker/engine.h"

namespace moeserve {

class StreamSink;

class WorkerService final : public internal::v1::Worker::Service {
 public:
  struct Identity {
    uint32_t rank = 0;
    uint32_t world_size = 1;
    uint32_t expert_begin = 0, expert_end = 0;
    uint64_t resident_weight_bytes = 0;
    uint64_t resident_expert_bytes = 0;
    std::string collective;
  };

  WorkerService();
  ~WorkerService() override;

  // The group has formed: serve routers with `engine` (which must outlive
  // the service's streams). `a2a_seconds` reads the exchange timer.
  void Ready(uint64_t epoch, Engine* engine, Identity identity,
             std::function<double()> a2a_seconds);
  // The group broke (or is re-forming): ends every router stream with
  // UNAVAILABLE (the routers reconnect, and are refused until the next
  // Ready) and returns once no call uses the engine any more, so it may be
  // destroyed.
  void NotReady();
  // Sends a LoadReport to every connected router.
  void BroadcastLoad(const EngineLoad& load);
  // From now on every LoadReport says draining, starting with one sent now
  // (with the last load sent), so routers stop placing requests here.
  void SetDraining();

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<internal::v1::WorkerMessage, internal::v1::RouterMessage>* stream)
      override;
  grpc::Status Wake(grpc::ServerContext* context, const internal::v1::WakeRequest* request,
                    internal::v1::WakeResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context,
                         const internal::v1::GetStatusRequest* request,
                         internal::v1::WorkerStatus* response) override;

 private:
  // Held shared by every call that uses engine_, exclusively by NotReady.
  std::shared_mutex serving_mu_;
  std::atomic<bool> ready_{false};  // changed under mu_
  uint64_t epoch_ = 0;
  Engine* engine_ = nullptr;
  Identity identity_;
  std::function<double()> a2a_seconds_;

  std::mutex mu_;
  std::vector<std::shared_ptr<StreamSink>> sinks_;
  std::vector<grpc::ServerContext*> streams_;  // open Connect calls, to cancel
  bool draining_ = false;  // mu_
  EngineLoad last_load_;   // mu_
};

}  // namespace moeserve

#endif  // MOESERVE_WORKER_WORKER_SERVICE_H_
