// Command-line encoder/decoder for a tokenizer.json, for debugging and for
// differential testing against other implementations.
//
//   tokenize_cli --tokenizer tokenizer.json "some text"      # prints ids
//   tokenize_cli --tokenizer tokenizer.json --decode 9707 1879
//   tokenize_cli --tokenizer tokenizer.json --corpus corpus.json
//       # prints the same JSON as testdata/encode_reference.js
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: tokenize_cli --tokenizer FILE (TEXT | --decode ID... | "
               "--corpus FILE)\n");
  return 2;
}

std::string Unhex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || std::string(argv[1]) != "--tokenizer") return Usage();
  auto tokenizer = moeserve::Tokenizer::FromFile(argv[2]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  const moeserve::Tokenizer& tok = **tokenizer;
  const std::string mode = argv[3];
  if (mode == "--decode") {
    std::vector<int32_t> ids;
    for (int i = 4; i < argc; ++i) ids.push_back(std::atoi(argv[i]));
    std::printf("%s\n", tok.Decode(ids, false).c_str());
    return 0;
  }
  if (mode == "--corpus") {
    if (argc != 5) return Usage();
    std::ifstream in(argv[4], std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json out = nlohmann::json::array();
    for (const auto& entry : nlohmann::json::parse(text.str())) {
      const std::string bytes = entry.contains("hex") ? Unhex(entry["hex"].get<std::string>())
                                                      : entry["text"].get<std::string>();
      const std::vector<int32_t> ids = tok.Encode(bytes, true);
      out.push_back({{"name", entry["name"]},
                     {"text", moeserve::SanitizeUtf8(bytes)},
                     {"ids", ids},
                     {"ids_no_special", tok.Encode(bytes, false)},
                     {"decoded", tok.Decode(ids, false)},
                     {"decoded_skip_special", tok.Decode(ids, true)}});
    }
    std::printf("%s", out.dump().c_str());
    return 0;
  }
  std::string joined;
  for (int i = 3; i < argc; ++i) joined += (i > 3 ? " " : "") + std::string(argv[i]);
  for (int32_t id : tok.Encode(joined, true)) std::printf("%d ", id);
  std::printf("\n");
  return 0;
}
