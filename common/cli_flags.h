// FlagSet: command-line flags spelled the way the product documents them
// (`--max-tokens 64`, `--world-size=2`, `--chat`), with generated --help.
//
// We write this small parser ourselves because absl flags cannot have dashes
// in flag names and has no notion of subcommands.
//
//   FlagSet flags("moeserve run", "Generate text from a prompt.");
//   std::string model;
//   int max_tokens = 64;
//   flags.String("model", &model, "DIR", "Checkpoint directory (required).");
//   flags.Int("max-tokens", &max_tokens, "N", "Tokens to generate.");
//   absl::Status s = flags.Parse(argc, argv, 2);  // argv[0..1] = binary, subcommand
//   if (flags.help_requested()) { std::cout << flags.Usage(); return 0; }
//
// Values are `--name=value` or `--name value`; a bool flag is `--name`,
// `--name=true|false` or `--noname`. `--` ends the flags. Anything not
// starting with `--` is positional. Unknown flags and malformed values are
// INVALID_ARGUMENT naming the flag.
#ifndef MOESERVE_COMMON_CLI_FLAGS_H_
#define MOESERVE_COMMON_CLI_FLAGS_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace moeserve {

class FlagSet {
 public:
  FlagSet(std::string command, std::string summary);

  // `target` holds the default on entry. `value_name` is shown in --help.
  void String(const char* name, std::string* target, const char* value_name, const char* help);
  void Int(const char* name, int* target, const char* value_name, const char* help);
  void Int64(const char* name, int64_t* target, const char* value_name, const char* help);
  void Uint64(const char* name, uint64_t* target, const char* value_name, const char* help);
  void Float(const char* name, float* target, const char* value_name, const char* help);
  void Bool(const char* name, bool* target, const char* help);

  absl::Status Parse(int argc, char** argv, int first = 1);

  bool help_requested() const { return help_; }
  bool WasSet(absl::string_view name) const { return set_.count(std::string(name)) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string value_name;  // empty for bools
    std::string help;
    std::string default_value;
    std::function<bool(absl::string_view)> set;  // false: malformed value
  };
  void Add(Flag flag);
  const Flag* Find(absl::string_view name) const;

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  std::set<std::string> set_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// Parses "1,2,3" (spaces allowed) into ids; INVALID_ARGUMENT naming `flag`.
absl::Status ParseIdList(absl::string_view text, absl::string_view flag,
                         std::vector<int32_t>* out);

}  // namespace moeserve

#endif  // MOESERVE_COMMON_CLI_FLAGS_H_
