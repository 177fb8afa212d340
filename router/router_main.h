// The router process: `moeserve-router` and `moeserve router` both run this.
#ifndef MOESERVE_ROUTER_ROUTER_MAIN_H_
#define MOESERVE_ROUTER_ROUTER_MAIN_H_

namespace moeserve {
namespace router {

// argv[first..] are the flags (see --help). Returns the exit code: 0 after
// SIGINT/SIGTERM, 2 for a bad command line, 1 for any other failure.
int RouterMain(int argc, char** argv, int first);

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_ROUTER_MAIN_H_
