// ChildProcess: a child started by `moeserve local`, with its stdout on a
// pipe the launcher reads line by line (for the ready lines), in its own
// process group, and with SIGTERM as its parent-death signal so it never
// outlives the launcher, even one killed with SIGKILL.
#ifndef MOESERVE_TOOLS_CHILD_PROCESS_H_
#define MOESERVE_TOOLS_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv. The child's signal mask is cleared.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::string& name,
                                                             const std::vector<std::string>& argv);
  ~ChildProcess();

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  // The next stdout line that starts with `prefix` (others are echoed to
  // stderr). DEADLINE_EXCEEDED at `deadline`; UNAVAILABLE if the child closed
  // its stdout (exited) first; CANCELLED when `interrupted()` turns true.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix,
                                          std::chrono::steady_clock::time_point deadline,
                                          const std::function<bool()>& interrupted);
  // From now on, echo the child's stdout to stderr on a thread (so the pipe
  // never fills).
  void ForwardOutput();

  // SIGTERM, then up to `grace` for it to exit, then SIGKILL. Returns the
  // wait status. Idempotent.
  int Stop(std::chrono::milliseconds grace);
  // Non-blocking: true (with the wait status) if the child has exited.
  bool Exited(int* status);

 private:
  ChildProcess(std::string name, pid_t pid, int out_fd)
      : name_(std::move(name)), pid_(pid), out_fd_(out_fd) {}

  std::string name_;
  pid_t pid_;
  int out_fd_;
  std::string buffer_;
  bool reaped_ = false;
  int status_ = 0;
  std::thread forwarder_;
};

// "exit code 3" / "signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

}  // namespace moeserve

#endif  // MOESERVE_TOOLS_CHILD_PROCESS_H_
