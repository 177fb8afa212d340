#include "router/placement.h"

namespace moeserve {
namespace router {

int PickWorker(absl::Span<const WorkerLoad> workers) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(workers.size()); ++i) {
    if (!workers[i].connected || workers[i].draining) continue;
    if (best < 0 || workers[i].outstanding() < workers[best].outstanding()) best = i;
  }
  return best;
}

}  // namespace router
}  // namespace moeserve
