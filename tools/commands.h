// Subcommands of the `moeserve` binary. Each takes the full argv (argv[1] is
// the subcommand) and returns the process exit code: 0 on success, 2 for a
// bad command line or input, 1 for any other failure.
#ifndef MOESERVE_TOOLS_COMMANDS_H_
#define MOESERVE_TOOLS_COMMANDS_H_

namespace moeserve {

int RunCommand(int argc, char** argv);
int TokenizeCommand(int argc, char** argv);
int GenerateCommand(int argc, char** argv);  // tools/generate_command.cc
int LocalCommand(int argc, char** argv);     // tools/local_command.cc

}  // namespace moeserve

#endif  // MOESERVE_TOOLS_COMMANDS_H_
