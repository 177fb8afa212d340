// moeserve: the command-line entry point.
//
//   moeserve run --model DIR --prompt "Hello" --chat --max-tokens 64
//   moeserve tokenize --model DIR --text "Hello"
//   moeserve SUBCOMMAND --help
#include <cstdio>
#include <cstring>

#include "tools/commands.h"

namespace {

constexpr char kUsage[] =
    "moeserve: serve Mixture-of-Experts language models from Hugging Face checkpoints.\n"
    "\n"
    "Usage: moeserve SUBCOMMAND [flags]\n"
    "\n"
    "Subcommands:\n"
    "  run        Generate from a prompt (text, chat or token ids) on the CPU engine.\n"
    "  tokenize   Encode text to token ids, or decode ids to text.\n"
    "\n"
    "Run `moeserve SUBCOMMAND --help` for the flags of each.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "run") == 0) return moeserve::RunCommand(argc, argv);
  if (std::strcmp(argv[1], "tokenize") == 0) return moeserve::TokenizeCommand(argc, argv);
  std::fprintf(stderr, "moeserve: unknown subcommand '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
