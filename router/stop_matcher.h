// StopMatcher: finds OpenAI/vLLM-style stop strings in streamed output text.
// Text goes in piece by piece, as the detokenizer produces it; what comes
// out is the text that can safely reach the client. It holds back the
// longest tail of the text seen so far that is the beginning of some stop
// string (it could still grow into a match) and releases it as soon as it
// can no longer match.
//
//   StopMatcher stop({"\n\n", "END"});
//   for (...) {
//     client_text += stop.Push(decoder.Append(id));
//     if (stop.stopped()) break;  // id completed a stop string
//   }
//   if (!stop.stopped()) client_text += stop.Flush();
//
// Once a stop string appears, Push returns the text before its first
// occurrence (the earliest one, whichever string it is) and stopped() turns
// true: the stop string and everything after it are dropped, and later
// calls return "". Given valid UTF-8 in and valid UTF-8 stop strings, every
// returned piece is valid UTF-8 (a held-back tail starts where a stop
// string does, at a character boundary). Not thread-safe.
#ifndef MOESERVE_ROUTER_STOP_MATCHER_H_
#define MOESERVE_ROUTER_STOP_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace moeserve {
namespace router {

class StopMatcher {
 public:
  // `stops` must be non-empty strings (RequestBuilder checks).
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds `text`; returns the text that is now safe to send.
  std::string Push(absl::string_view text);
  // Returns whatever is held back (at the end of the output); "" once
  // stopped.
  std::string Flush();

  bool stopped() const { return stopped_; }
  // The text currently held back.
  const std::string& held() const { return held_; }

 private:
  // Length of the longest suffix of `text` that is a proper prefix of a stop
  // string.
  size_t PartialMatchLength(absl::string_view text) const;

  const std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_STOP_MATCHER_H_
