// The worker process: `moeserve-worker` and `moeserve worker` both run this.
#ifndef MOESERVE_WORKER_WORKER_MAIN_H_
#define MOESERVE_WORKER_WORKER_MAIN_H_

namespace moeserve {

// argv[first..] are the flags (see --help). Returns the exit code: 0 after a
// clean stop (SIGINT/SIGTERM), 2 for a bad command line, 1 for any failure
// (loading, forming the group, or the group breaking).
int WorkerMain(int argc, char** argv, int first);

}  // namespace moeserve

#endif  // MOESERVE_WORKER_WORKER_MAIN_H_
