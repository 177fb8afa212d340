// `moeserve tokenize`: text to ids (a JSON array) or ids to text.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/cli_flags.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/model_files.h"

namespace moeserve {

int TokenizeCommand(int argc, char** argv) {
  std::string model, text, decode;
  bool has_text = false, add_special = true, skip_special = false;
  FlagSet flags("moeserve tokenize",
                "Encode text with the model's tokenizer.json and print the ids as a JSON array "
                "(text from --text, else standard input), or decode ids to text with --decode.");
  flags.String("model", &model, "DIR", "Checkpoint directory holding tokenizer.json.");
  flags.String("text", &text, "TEXT", "Text to encode (default: read standard input).");
  flags.String("decode", &decode, "IDS", "Comma-separated ids to decode instead.");
  flags.Bool("add-special-tokens", &add_special,
             "Apply the tokenizer's post-processor (e.g. Llama-2's <s>); default true, as HF.");
  flags.Bool("skip-special-tokens", &skip_special, "When decoding, drop special tokens.");
  auto fail = [](const std::string& msg, int code) {
    std::fprintf(stderr, "moeserve tokenize: %s\n", msg.c_str());
    return code;
  };
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) return fail(std::string(s.message()), 2);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  has_text = flags.WasSet("text");
  if (model.empty()) return fail("--model DIR is required", 2);
  if (has_text && !decode.empty()) return fail("give --text or --decode, not both", 2);
  auto files = LoadTextFiles(model);
  if (!files.ok()) return fail(std::string(files.status().message()), 1);
  if (files->tokenizer == nullptr) return fail(model + " has no tokenizer.json", 1);

  if (!decode.empty()) {
    std::vector<int32_t> ids;
    if (absl::Status s = ParseIdList(decode, "decode", &ids); !s.ok()) {
      return fail(std::string(s.message()), 2);
    }
    std::printf("%s\n", files->tokenizer->Decode(ids, skip_special).c_str());
    return 0;
  }
  if (!has_text) text.assign(std::istreambuf_iterator<char>(std::cin), {});
  nlohmann::json ids = files->tokenizer->Encode(text, add_special);
  std::printf("%s\n", ids.dump().c_str());
  return 0;
}

}  // namespace moeserve
