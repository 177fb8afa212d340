#include "collective/group.h"

#include "absl/strings/str_cat.h"
#include "collective/gloo_collective.h"
#include "collective/local_collective.h"

#ifdef MOESERVE_HAS_NCCL
#include "collective/nccl_collective.h"
#endif

namespace moeserve {
namespace {

absl::StatusOr<std::unique_ptr<Collective>> CreateNccl(KvStore& store, const GroupOptions& o) {
#ifdef MOESERVE_HAS_NCCL
  NcclOptions n;
  n.rank = o.rank;
  n.world_size = o.world_size;
  n.device = o.device;
  n.prefix = absl::StrCat(o.prefix, "nccl/");
  n.timeout = o.timeout;
  return CreateNcclCollective(store, n);
#else
  (void)store;
  (void)o;
  return absl::FailedPreconditionError(
      "collective kind 'nccl': this build has no CUDA/NCCL (no toolkit was found at build time)");
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(KvStore& store,
                                                             const GroupOptions& o) {
  if (o.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size ", o.world_size, " < 1"));
  }
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", o.rank, " is not in [0, ", o.world_size, ")"));
  }
  const std::string kind = o.kind == "auto" ? (o.world_size == 1 ? "local" : "gloo") : o.kind;
  if (kind == "local") {
    if (o.world_size != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("collective kind 'local' needs world_size 1, not ", o.world_size));
    }
    return std::unique_ptr<Collective>(std::make_unique<LocalCollective>());
  }
  if (kind == "gloo") {
    GlooOptions g;
    g.rank = o.rank;
    g.world_size = o.world_size;
    g.host = o.host;
    g.prefix = absl::StrCat(o.prefix, "gloo/");
    g.timeout = o.timeout;
    return CreateGlooCollective(store, g);
  }
  if (kind == "nccl") return CreateNccl(store, o);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown collective kind '", o.kind, "' (want auto, local, gloo or nccl)"));
}

}  // namespace moeserve
