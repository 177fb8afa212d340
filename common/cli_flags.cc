#include "common/cli_flags.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moeserve {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

const FlagSet::Flag* FlagSet::Find(absl::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void FlagSet::String(const char* name, std::string* target, const char* value_name,
                     const char* help) {
  Add({name, value_name, help, *target, [target](absl::string_view v) {
         *target = std::string(v);
         return true;
       }});
}

void FlagSet::Int(const char* name, int* target, const char* value_name, const char* help) {
  Add({name, value_name, help, absl::StrCat(*target),
       [target](absl::string_view v) { return absl::SimpleAtoi(v, target); }});
}

void FlagSet::Int64(const char* name, int64_t* target, const char* value_name,
                    const char* help) {
  Add({name, value_name, help, absl::StrCat(*target),
       [target](absl::string_view v) { return absl::SimpleAtoi(v, target); }});
}

void FlagSet::Uint64(const char* name, uint64_t* target, const char* value_name,
                     const char* help) {
  Add({name, value_name, help, absl::StrCat(*target),
       [target](absl::string_view v) { return absl::SimpleAtoi(v, target); }});
}

void FlagSet::Float(const char* name, float* target, const char* value_name, const char* help) {
  Add({name, value_name, help, absl::StrCat(*target),
       [target](absl::string_view v) { return absl::SimpleAtof(v, target); }});
}

void FlagSet::Bool(const char* name, bool* target, const char* help) {
  Add({name, "", help, *target ? "true" : "false",
       [target](absl::string_view v) { return absl::SimpleAtob(v, target); }});
}

absl::Status FlagSet::Parse(int argc, char** argv, int first) {
  bool flags_done = false;
  for (int i = first; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (flags_done || !absl::StartsWith(arg, "-") || arg == "-") {
      positional_.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      help_ = true;
      continue;
    }
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option '", arg, "' (flags start with --; see --help)"));
    }
    absl::string_view name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    const Flag* flag = Find(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
      flag = Find(name.substr(2));
      negated = flag != nullptr && flag->value_name.empty();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " for '", command_, "' (see --help)"));
    }
    if (flag->value_name.empty()) {  // bool
      if (!has_value) value = negated ? "false" : "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (!flag->set(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, ": cannot parse '", value, "'"));
    }
    set_.insert(flag->name);
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("Usage: ", command_, " [flags]\n\n", summary_, "\n\nFlags:\n");
  for (const Flag& f : flags_) {
    std::string head = absl::StrCat("  --", f.name, f.value_name.empty() ? "" : " ", f.value_name);
    absl::StrAppend(&out, head);
    if (head.size() < 26) {
      out.append(26 - head.size(), ' ');
    } else {
      absl::StrAppend(&out, "\n", std::string(26, ' '));
    }
    absl::StrAppend(&out, f.help);
    if (!f.default_value.empty() && f.default_value != "false" && f.default_value != "0") {
      absl::StrAppend(&out, " (default: ", f.default_value, ")");
    }
    out += "\n";
  }
  absl::StrAppend(&out, "  --help                  Show this help.\n");
  return out;
}

absl::Status ParseIdList(absl::string_view text, absl::string_view flag,
                         std::vector<int32_t>* out) {
  out->clear();
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    int32_t id;
    if (piece.empty() || !absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": '", piece, "' is not an integer (expected ids like 1,2,3)"));
    }
    out->push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace moeserve
