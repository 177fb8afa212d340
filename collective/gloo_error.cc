#include "collective/gloo_error.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace moeserve {
namespace {

// The rank whose address `message` names, or -1. "[h]:401" must not match
// "[h]:4011": the address must not be followed by another digit.
int FindPeer(absl::string_view message, absl::Span<const std::string> peer_addresses) {
  for (size_t r = 0; r < peer_addresses.size(); ++r) {
    const std::string& addr = peer_addresses[r];
    if (addr.empty()) continue;
    for (size_t at = message.find(addr); at != absl::string_view::npos;
         at = message.find(addr, at + 1)) {
      const size_t end = at + addr.size();
      if (end == message.size() || !absl::ascii_isdigit(message[end])) return static_cast<int>(r);
    }
  }
  return -1;
}

}  // namespace

absl::Status GlooFailure(absl::string_view what, const std::exception& e,
                         absl::Span<const std::string> peer_addresses) {
  const std::string detail = e.what();  // EnforceNotMet's what() is its whole message
  const std::string lower = absl::AsciiStrToLower(detail);
  const bool timed_out =
      absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout");
  std::string msg = absl::StrCat(what, " failed: ", detail);
  const int peer = FindPeer(detail, peer_addresses);
  if (peer >= 0) absl::StrAppend(&msg, " (peer rank ", peer, ")");
  return timed_out ? absl::DeadlineExceededError(msg) : absl::UnavailableError(msg);
}

}  // namespace moeserve
