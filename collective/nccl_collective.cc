#include "collective/nccl_collective.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collective/alltoallv_args.h"
#include "collective/nccl_api.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_status.h"

namespace moeserve {
namespace {

// How often a wait polls the stream and the communicator.
constexpr absl::Duration kPoll = absl::Microseconds(20);

bool Started(ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; }

class NcclCollective final : public Collective {
 public:
  NcclCollective(const NcclOptions& o, ncclComm_t comm, cudaStream_t stream)
      : rank_(o.rank),
        world_size_(o.world_size),
        device_(o.device),
        timeout_(o.timeout),
        comm_(comm),
        stream_(stream) {}

  ~NcclCollective() override {
    cudaSetDevice(device_);
    if (comm_ != nullptr) {
      // A healthy communicator is finalized (bounded), a broken one aborted.
      bool clean = broken_.ok() && Started(ncclCommFinalize(comm_)) &&
                   WaitComm(comm_, absl::Now() + timeout_).ok();
      if (clean) {
        ncclCommDestroy(comm_);
      } else if (!aborted_) {
        ncclCommAbort(comm_);
      }
    }
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const char* name() const override { return "nccl"; }
  MemorySpace memory() const override { return MemorySpace::kDevice; }

  absl::Status AllReduceSum(int64_t* data, size_t n) override {
    MOE_RETURN_IF_ERROR(broken_);
    if (n == 0) return absl::OkStatus();
    if (data == nullptr) return Break(absl::InvalidArgumentError("AllReduceSum: null data"));
    MOE_RETURN_IF_ERROR(Stage(data, n * sizeof(int64_t), 0));
    auto* buf = static_cast<int64_t*>(scratch_);
    MOE_RETURN_IF_ERROR(
        Check("ncclAllReduce", ncclAllReduce(buf, buf, n, ncclInt64, ncclSum, comm_, stream_)));
    MOE_RETURN_IF_ERROR(Wait("AllReduceSum"));
    return Unstage(data, buf, n * sizeof(int64_t));
  }

  absl::Status AllToAll(const int64_t* send, int64_t* recv) override {
    MOE_RETURN_IF_ERROR(broken_);
    if (send == nullptr || recv == nullptr) {
      return Break(absl::InvalidArgumentError("AllToAll: null buffer"));
    }
    const size_t bytes = world_size_ * sizeof(int64_t);
    MOE_RETURN_IF_ERROR(Stage(send, bytes, bytes));
    auto* dsend = static_cast<int64_t*>(scratch_);
    int64_t* drecv = dsend + world_size_;
    MOE_RETURN_IF_ERROR(Check("ncclGroupStart", ncclGroupStart()));
    for (int p = 0; p < world_size_; ++p) {
      MOE_RETURN_IF_ERROR(Check("ncclSend", ncclSend(dsend + p, 1, ncclInt64, p, comm_, stream_)));
      MOE_RETURN_IF_ERROR(Check("ncclRecv", ncclRecv(drecv + p, 1, ncclInt64, p, comm_, stream_)));
    }
    MOE_RETURN_IF_ERROR(Check("ncclGroupEnd", ncclGroupEnd()));
    MOE_RETURN_IF_ERROR(Wait("AllToAll"));
    return Unstage(recv, drecv, bytes);
  }

  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, size_t elem_bytes) override {
    MOE_RETURN_IF_ERROR(broken_);
    AllToAllVBytes bytes;
    absl::Status s = CheckAllToAllVArgs(rank_, world_size_, send, send_counts, recv, recv_counts,
                                        elem_bytes, &bytes);
    if (!s.ok()) return Break(std::move(s));
    MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    const auto* in = static_cast<const uint8_t*>(send);
    auto* out = static_cast<uint8_t*>(recv);
    MOE_RETURN_IF_ERROR(Check("ncclGroupStart", ncclGroupStart()));
    for (int p = 0; p < world_size_; ++p) {
      const size_t send_bytes = send_counts[p] * elem_bytes;
      const size_t recv_bytes = recv_counts[p] * elem_bytes;
      if (send_bytes > 0) {
        MOE_RETURN_IF_ERROR(
            Check("ncclSend", ncclSend(in, send_bytes, ncclUint8, p, comm_, stream_)));
      }
      if (recv_bytes > 0) {
        MOE_RETURN_IF_ERROR(
            Check("ncclRecv", ncclRecv(out, recv_bytes, ncclUint8, p, comm_, stream_)));
      }
      in += send_bytes;
      out += recv_bytes;
    }
    MOE_RETURN_IF_ERROR(Check("ncclGroupEnd", ncclGroupEnd()));
    return Wait("AllToAllV");
  }

  absl::Status Barrier() override {
    int64_t one = 1;
    return AllReduceSum(&one, 1);
  }

  // Polls the communicator until no operation is in progress; DEADLINE_EXCEEDED
  // or UNAVAILABLE (not aborting: the caller decides).
  static absl::Status WaitComm(ncclComm_t comm, absl::Time deadline) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm, &state);
      if (r != ncclSuccess) state = r;
      if (state == ncclSuccess) return absl::OkStatus();
      if (state != ncclInProgress) {
        return absl::UnavailableError(
            absl::StrCat(ncclGetErrorString(state), ": ", ncclGetLastError(comm)));
      }
      if (absl::Now() > deadline) return absl::DeadlineExceededError("NCCL still in progress");
      absl::SleepFor(kPoll);
    }
  }

 private:
  // Copies `bytes` of host data into scratch_ (growing it to at least
  // bytes + extra) on the stream.
  absl::Status Stage(const void* host, size_t bytes, size_t extra) {
    MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    if (scratch_bytes_ < bytes + extra) {
      if (scratch_ != nullptr) cudaFree(scratch_);
      scratch_ = nullptr;
      scratch_bytes_ = 0;
      MOE_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch_, bytes + extra));
      scratch_bytes_ = bytes + extra;
    }
    absl::Status s = [&]() -> absl::Status {
      MOE_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(scratch_, host, bytes, cudaMemcpyHostToDevice, stream_));
      return absl::OkStatus();
    }();
    return s.ok() ? s : Break(s);
  }

  // Copies device results back once the stream is idle (bounded).
  absl::Status Unstage(void* host, const void* device, size_t bytes) {
    absl::Status s = [&]() -> absl::Status {
      MOE_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_));
      MOE_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      return absl::OkStatus();
    }();
    return s.ok() ? s : Break(s);
  }

  // An NCCL call's immediate result; ncclInProgress is fine (non-blocking).
  absl::Status Check(const char* call, ncclResult_t r) {
    if (Started(r)) return absl::OkStatus();
    return Fail(absl::UnavailableError(
        absl::StrCat(call, " failed: ", ncclGetErrorString(r), ": ", ncclGetLastError(comm_))));
  }

  // Waits for the queued work: the stream idle and the communicator clean.
  absl::Status Wait(const char* op) {
    const absl::Time deadline = absl::Now() + timeout_;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) state = r;
      if (!Started(state)) {
        return Fail(absl::UnavailableError(
            absl::StrCat(op, ": ", ncclGetErrorString(state), ": ", ncclGetLastError(comm_))));
      }
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess && state == ncclSuccess) return absl::OkStatus();
      if (q != cudaSuccess && q != cudaErrorNotReady) {
        return Fail(absl::UnavailableError(
            absl::StrCat(op, ": ", cudaGetErrorName(q), ": ", cudaGetErrorString(q))));
      }
      if (absl::Now() > deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat(op, ": not complete after ", absl::FormatDuration(timeout_))));
      }
      absl::SleepFor(kPoll);
    }
  }

  // Aborts the communicator (so nothing stays queued on the GPU) and breaks.
  absl::Status Fail(absl::Status s) {
    if (!aborted_) {
      ncclCommAbort(comm_);
      aborted_ = true;
    }
    return Break(absl::Status(
        s.code(), absl::StrCat("nccl (rank ", rank_, " of ", world_size_, "): ", s.message())));
  }

  absl::Status Break(absl::Status s) {
    broken_ = std::move(s);
    return broken_;
  }

  const int rank_, world_size_, device_;
  const absl::Duration timeout_;
  ncclComm_t comm_;
  cudaStream_t stream_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  bool aborted_ = false;
  absl::Status broken_;
};

absl::StatusOr<ncclUniqueId> ShareUniqueId(KvStore& store, const NcclOptions& o) {
  ncclUniqueId id;
  const std::string key = o.prefix + "id";
  if (o.rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      return absl::UnavailableError(absl::StrCat("ncclGetUniqueId: ", ncclGetErrorString(r)));
    }
    MOE_RETURN_IF_ERROR(store.Set(key, absl::string_view(id.internal, sizeof(id.internal))));
    return id;
  }
  MOE_ASSIGN_OR_RETURN(std::string bytes, store.Get(key, o.timeout));
  if (bytes.size() != sizeof(id.internal)) {
    return absl::InternalError(absl::StrCat("NCCL id under '", key, "' has ", bytes.size(),
                                            " bytes, not ", sizeof(id.internal)));
  }
  std::memcpy(id.internal, bytes.data(), bytes.size());
  return id;
}

absl::Status CheckOptions(const NcclOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: rank ", o.rank, " is not in a world of ", o.world_size));
  }
  MOE_ASSIGN_OR_RETURN(int devices, cuda::DeviceCount());
  if (devices == 0) return absl::FailedPreconditionError("nccl: no CUDA GPU on this machine");
  if (o.device < 0 || o.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: device ", o.device, " is not one of the ", devices, " GPUs"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(KvStore& store,
                                                                 const NcclOptions& o) {
  MOE_RETURN_IF_ERROR(CheckOptions(o));
  MOE_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
  MOE_ASSIGN_OR_RETURN(ncclUniqueId id, ShareUniqueId(store, o));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every wait below is ours, and bounded
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, o.world_size, id, o.rank, &config);
  absl::Status s = Started(r) ? NcclCollective::WaitComm(comm, absl::Now() + o.timeout)
                              : absl::UnavailableError(ncclGetErrorString(r));
  if (!s.ok()) {
    if (comm != nullptr) ncclCommAbort(comm);
    return absl::Status(s.code(), absl::StrCat("nccl: forming rank ", o.rank, " of ", o.world_size,
                                               ": ", s.message()));
  }
  cudaStream_t stream = nullptr;
  const cudaError_t err = cudaStreamCreate(&stream);
  if (err != cudaSuccess) {
    ncclCommAbort(comm);
    return cuda::CudaError(err, "cudaStreamCreate", __FILE__, __LINE__);
  }
  return std::unique_ptr<Collective>(std::make_unique<NcclCollective>(o, comm, stream));
}

}  // namespace moeserve
