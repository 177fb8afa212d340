// Gloo's exceptions as absl::Status (internal to collective/). Gloo reports
// every failure by throwing: gloo::IoException (a peer closed its socket, a
// wait timed out), gloo::EnforceNotMet (a broken precondition), and
// std::exception from the standard library.
#ifndef MOESERVE_COLLECTIVE_GLOO_ERROR_H_
#define MOESERVE_COLLECTIVE_GLOO_ERROR_H_

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace moeserve {

// DEADLINE_EXCEEDED if the exception says a wait timed out, else
// UNAVAILABLE; the message starts with `what` (the operation and the rank).
// peer_addresses[r] is the address (as gloo prints it, "[10.0.0.3]:41234")
// under which rank r appears in gloo's messages, empty if unknown: a message
// naming one gets "(peer rank r)" added.
absl::Status GlooFailure(absl::string_view what, const std::exception& e,
                         absl::Span<const std::string> peer_addresses = {});

}  // namespace moeserve

#endif  // MOESERVE_COLLECTIVE_GLOO_ERROR_H_
