#include "collective/gloo_collective.h"

#include <chrono>
#include <exception>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "collective/alltoallv_args.h"
#include "collective/gloo_error.h"
#include "collective/gloo_store.h"
#include "common/status_macros.h"
#include "gloo/allreduce.h"
#include "gloo/alltoall.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"

namespace moeserve {
namespace {

class GlooCollective final : public Collective {
 public:
  GlooCollective(std::shared_ptr<gloo::Context> context, absl::Duration timeout,
                 std::vector<std::string> peer_addresses)
      : context_(std::move(context)),
        timeout_(absl::ToChronoMilliseconds(timeout)),
        peer_addresses_(std::move(peer_addresses)) {}

  int rank() const override { return context_->rank; }
  int world_size() const override { return context_->size; }
  const char* name() const override { return "gloo"; }

  absl::Status AllReduceSum(int64_t* data, size_t n) override {
    if (n == 0) return broken_;
    if (data == nullptr) return Break(absl::InvalidArgumentError("AllReduceSum: null data"));
    return Run("AllReduceSum", [&](uint32_t tag) {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, n);
      void (*sum)(void*, const void*, const void*, size_t) = &gloo::sum<int64_t>;
      opts.setReduceFunction(sum);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    });
  }

  absl::Status AllToAll(const int64_t* send, int64_t* recv) override {
    if (send == nullptr || recv == nullptr) {
      return Break(absl::InvalidArgumentError("AllToAll: null buffer"));
    }
    return Run("AllToAll", [&](uint32_t tag) {
      gloo::AlltoallOptions opts(context_);
      opts.setInput(const_cast<int64_t*>(send), world_size());
      opts.setOutput(recv, world_size());
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::alltoall(opts);
    });
  }

  absl::Status AllToAllV(const void* send, absl::Span<const int64_t> send_counts, void* recv,
                         absl::Span<const int64_t> recv_counts, size_t elem_bytes) override {
    if (!broken_.ok()) return broken_;
    AllToAllVBytes bytes;
    absl::Status s = CheckAllToAllVArgs(rank(), world_size(), send, send_counts, recv, recv_counts,
                                        elem_bytes, &bytes);
    if (!s.ok()) return Break(std::move(s));
    // Gloo works in bytes here; a zero total may come with a null pointer,
    // which gloo would hand to memcpy: give it a real (unused) byte instead.
    std::vector<int64_t> send_bytes(send_counts.begin(), send_counts.end());
    std::vector<int64_t> recv_bytes(recv_counts.begin(), recv_counts.end());
    for (int64_t& b : send_bytes) b *= static_cast<int64_t>(elem_bytes);
    for (int64_t& b : recv_bytes) b *= static_cast<int64_t>(elem_bytes);
    auto* in = bytes.send > 0 ? static_cast<uint8_t*>(const_cast<void*>(send)) : &spare_in_;
    auto* out = bytes.recv > 0 ? static_cast<uint8_t*>(recv) : &spare_out_;
    return Run("AllToAllV", [&](uint32_t tag) {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(in, std::move(send_bytes));
      opts.setOutput(out, std::move(recv_bytes));
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::alltoallv(opts);
    });
  }

  absl::Status Barrier() override {
    return Run("Barrier", [&](uint32_t tag) {
      gloo::BarrierOptions opts(context_);
      opts.setTag(tag);
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    });
  }

 private:
  // Runs one gloo operation under a fresh tag (every rank makes the same
  // calls, so tags agree), turning any exception into the broken state.
  template <typename Fn>
  absl::Status Run(const char* op, Fn&& fn) {
    if (!broken_.ok()) return broken_;
    const uint32_t tag = next_tag_++;
    const std::string what =
        absl::StrCat("gloo ", op, " #", tag, " (rank ", rank(), " of ", world_size(), ")");
    try {
      fn(tag);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return Break(GlooFailure(what, e, peer_addresses_));
    } catch (...) {
      return Break(absl::UnavailableError(absl::StrCat(what, " failed: unknown exception")));
    }
  }

  absl::Status Break(absl::Status s) {
    broken_ = std::move(s);
    return broken_;
  }

  std::shared_ptr<gloo::Context> context_;
  const std::chrono::milliseconds timeout_;
  const std::vector<std::string> peer_addresses_;  // see ExchangePeerAddresses
  uint32_t next_tag_ = 0;
  absl::Status broken_;  // OK until the first failure
  uint8_t spare_in_ = 0, spare_out_ = 0;
};

// Gloo's messages name a peer by the address of its end of the pair
// ("[10.0.0.3]:41234"). Each rank publishes, for every peer, the address of
// its own end; the result maps rank -> the address its messages show.
absl::StatusOr<std::vector<std::string>> ExchangePeerAddresses(KvStore& store, const GlooOptions& o,
                                                               gloo::Context& context) {
  auto key = [&](int from, int to) { return absl::StrCat(o.prefix, "pair/", from, "/", to); };
  for (int peer = 0; peer < o.world_size; ++peer) {
    if (peer == o.rank) continue;
    MOE_RETURN_IF_ERROR(store.Set(key(o.rank, peer), context.getPair(peer)->address().str()));
  }
  std::vector<std::string> addresses(o.world_size);
  for (int peer = 0; peer < o.world_size; ++peer) {
    if (peer == o.rank) continue;
    MOE_ASSIGN_OR_RETURN(addresses[peer], store.Get(key(peer, o.rank), o.timeout));
  }
  return addresses;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(KvStore& store,
                                                                 const GlooOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo: rank ", o.rank, " is not in a world of ", o.world_size));
  }
  if (o.host.empty()) return absl::InvalidArgumentError("gloo: host is empty");
  if (o.timeout < absl::Milliseconds(1)) return absl::InvalidArgumentError("gloo: timeout < 1ms");
  const std::string what = absl::StrCat("gloo connect (rank ", o.rank, " of ", o.world_size,
                                        ", host ", o.host, ", prefix '", o.prefix, "')");
  GlooStore gloo_store(store, o.prefix, o.timeout);
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = o.host;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.world_size);
    context->setTimeout(absl::ToChronoMilliseconds(o.timeout));
    context->connectFullMesh(gloo_store, device);
    absl::StatusOr<std::vector<std::string>> peers = ExchangePeerAddresses(store, o, *context);
    if (!peers.ok()) {
      return absl::Status(peers.status().code(),
                          absl::StrCat(what, ": ", peers.status().message()));
    }
    return std::unique_ptr<Collective>(
        std::make_unique<GlooCollective>(context, o.timeout, *std::move(peers)));
  } catch (const std::exception& e) {
    const absl::Status store_error = gloo_store.error();
    if (!store_error.ok()) {
      return absl::Status(store_error.code(), absl::StrCat(what, ": ", store_error.message()));
    }
    return GlooFailure(what, e);
  } catch (...) {
    return absl::UnavailableError(absl::StrCat(what, " failed: unknown exception"));
  }
}

}  // namespace moeserve
