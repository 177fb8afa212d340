// moeserve: the command-line entry point.
//
//   moeserve run --model DIR --prompt "Hello" --chat --max-tokens 64
//   moeserve tokenize --model DIR --text "Hello"
//   moeserve local --model DIR --workers 2 --grpc-port 50051
//   moeserve generate --target HOST:PORT --prompt "Hello" --chat --max-tokens 64
//   moeserve worker ... / moeserve router ...   (what `local` starts)
//   moeserve SUBCOMMAND --help
#include <cstdio>
#include <cstring>

#include "router/router_main.h"
#include "tools/commands.h"
#include "worker/worker_main.h"

namespace {

constexpr char kUsage[] =
    "moeserve: serve Mixture-of-Experts language models from Hugging Face checkpoints.\n"
    "\n"
    "Usage: moeserve SUBCOMMAND [flags]\n"
    "\n"
    "Subcommands:\n"
    "  run        Generate from a prompt (text, chat or token ids) on the CPU engine.\n"
    "  tokenize   Encode text to token ids, or decode ids to text.\n"
    "  local      Run a cluster on this machine: N expert-parallel workers and a router.\n"
    "  generate   Generate from a prompt on a running cluster (gRPC client of the router).\n"
    "  worker     One worker rank (what `local` starts; also `moeserve-worker`).\n"
    "  router     The router (what `local` starts; also `moeserve-router`).\n"
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
  if (std::strcmp(argv[1], "generate") == 0) return moeserve::GenerateCommand(argc, argv);
  if (std::strcmp(argv[1], "local") == 0) return moeserve::LocalCommand(argc, argv);
  if (std::strcmp(argv[1], "worker") == 0) return moeserve::WorkerMain(argc, argv, 2);
  if (std::strcmp(argv[1], "router") == 0) return moeserve::router::RouterMain(argc, argv, 2);
  std::fprintf(stderr, "moeserve: unknown subcommand '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
