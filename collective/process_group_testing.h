// Test helper: runs a body on every rank of a real multi-process group on
// this machine. Forks world_size children; child rank 0 hosts the gRPC
// coordinator (CoordinatorService over an InMemoryKvStore on 127.0.0.1,
// port 0) and passes its port to the others through a pipe; each child forms
// its Collective with CreateCollective and runs `body`, whose return value
// becomes the child's exit code (0: success). The parent kills every child
// still running after `limit`.
//
//   GroupOptions o;  o.world_size = 3;
//   std::vector<int> codes = RunProcessGroup(o, absl::Seconds(60),
//       [](Collective& c, KvStore& store) { return c.Barrier().ok() ? 0 : 1; });
//   // codes[r]: rank r's exit code, or kKilled / 128 + signal
//
// Call it before the test process uses gRPC or starts threads (fork).
#ifndef MOESERVE_COLLECTIVE_PROCESS_GROUP_TESTING_H_
#define MOESERVE_COLLECTIVE_PROCESS_GROUP_TESTING_H_

#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "collective/collective.h"
#include "collective/group.h"
#include "collective/kv_store.h"

namespace moeserve {

// Exit code reported for a child the parent had to kill after `limit`.
constexpr int kKilled = 1000;

// o.rank is ignored (each child gets its own); o.world_size children run.
std::vector<int> RunProcessGroup(const GroupOptions& o, absl::Duration limit,
                                 const std::function<int(Collective&, KvStore&)>& body);

// Runs `fn` in one forked child with the same limit handling; its exit code.
int RunInChild(absl::Duration limit, const std::function<int()>& fn);

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_PROCESS_GROUP_TESTING_H_
