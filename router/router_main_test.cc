// The moeserve-router binary as the launcher sees it, in front of two
// in-process fake workers: health stays NOT_SERVING while the group forms,
// no gRPC callback thread runs,
// the ready line names the real port and the worker count, Generate works
// (through `moeserve generate` too), losing a worker turns health
// NOT_SERVING, and SIGTERM exits 0.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "moeserve/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "router/fake_worker_service.h"

namespace moeserve {
namespace router {
namespace {

using ::testing::HasSubstr;

constexpr char kRouter[] = "router/moeserve-router";
constexpr char kCli[] = "tools/moeserve";
constexpr char kModel[] = "tests/fixtures/qwen3_moe_chat";

// A child process with its stdout (and optionally stderr) on pipes.
struct Child {
  pid_t pid = -1;
  int out = -1, err = -1;
};

Child Spawn(const std::vector<std::string>& args, bool capture_stderr) {
  int out[2], err[2];
  EXPECT_EQ(pipe(out), 0);
  if (capture_stderr) {
    EXPECT_EQ(pipe(err), 0);
  }
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(out[1], 1);
    if (capture_stderr) dup2(err[1], 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  c.out = out[0];
  if (capture_stderr) {
    close(err[1]);
    c.err = err[0];
  }
  return c;
}

// Reads one line from `fd`, waiting up to `timeout`; empty on timeout/EOF.
std::string ReadLine(int fd, absl::Duration timeout) {
  std::string line;
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char ch;
    if (read(fd, &ch, 1) != 1) break;
    if (ch == '\n') return line;
    line += ch;
  }
  return line;
}

std::string ReadAll(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) s.append(buf, n);
  close(fd);
  return s;
}

// Waits for `pid`; its exit code, or -1 if it does not exit within `timeout`.
int WaitExit(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return -1;
}

// Runs `moeserve generate ARGS`; returns the exit code.
int Generate(const std::vector<std::string>& args, std::string* out, std::string* err) {
  std::vector<std::string> argv = {kCli, "generate"};
  argv.insert(argv.end(), args.begin(), args.end());
  Child c = Spawn(argv, /*capture_stderr=*/true);
  // Small outputs: read stdout then stderr without deadlock risk.
  *out = ReadAll(c.out);
  *err = ReadAll(c.err);
  return WaitExit(c.pid, absl::Seconds(30));
}

// grpc.health.v1.Health/Check by hand (no C++ health stubs are installed):
// 1 SERVING, 2 NOT_SERVING, -1 on RPC error.
int HealthOf(grpc::Channel* channel, const std::string& service) {
  grpc::GenericStub stub(channel->shared_from_this());
  std::string request;
  if (!service.empty())
    request = absl::StrCat("\x0a", std::string(1, char(service.size())), service);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out,
                 [&](grpc::Status s) {
                   status = s;
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  out.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.size() == 2 && bytes[0] == 0x08) return bytes[1];
  return bytes.empty() ? 0 : -1;
}

// How many threads of `pid` have the name `name` (/proc/PID/task/*/comm).
int ThreadsNamed(pid_t pid, const std::string& name) {
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    FILE* f = fopen(absl::StrCat(dir, "/", e->d_name, "/comm").c_str(), "r");
    if (f == nullptr) continue;
    char comm[64] = {};
    if (fgets(comm, sizeof(comm), f) != nullptr && std::string(comm) == name + "\n") ++n;
    fclose(f);
  }
  closedir(d);
  return n;
}

bool WaitForHealth(grpc::Channel* channel, int want) {
  for (int i = 0; i < 300; ++i) {
    if (HealthOf(channel, "") == want && HealthOf(channel, "moeserve.v1.Inference") == want) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST(RouterMainTest, ServesAFakeGroup) {
  FakeWorkerService w0(0, 2), w1(1, 2);
  int p0 = 0, p1 = 0;
  auto s0 = w0.Serve(&p0);
  auto s1 = w1.Serve(&p1);
  ASSERT_NE(p0, 0);
  ASSERT_NE(p1, 0);
  w1.SetForming(1000000);  // rank 1 keeps the group from forming for now

  Child router = Spawn({kRouter, "--listen", "127.0.0.1:0", "--workers",
                        absl::StrCat("127.0.0.1:", p0, ",127.0.0.1:", p1), "--model", kModel,
                        "--router-id", "r-test"},
                       /*capture_stderr=*/false);
  ASSERT_GT(router.pid, 0);
  // No ready line while a worker is missing... find the port from /proc is
  // not portable, so check that nothing is printed, then let rank 1 form.
  pollfd p = {router.out, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 500), 0) << "ready line before every worker was Welcomed";
  w1.SetForming(0);
  const std::string ready = ReadLine(router.out, absl::Seconds(20));
  std::smatch m;
  ASSERT_TRUE(std::regex_match(ready, m,
                               std::regex("moeserve-router ready grpc=127\\.0\\.0\\.1:(\\d+) "
                                          "workers=2")))
      << "'" << ready << "'";
  const std::string target = absl::StrCat("127.0.0.1:", m[1].str());
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  EXPECT_TRUE(WaitForHealth(channel.get(), 1));
  EXPECT_EQ(w0.hellos()[0], "r-test");

  // A streamed completion through the router.
  auto stub = v1::Inference::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::GenerateRequest request;
    request.mutable_token_ids()->add_ids(3);
    auto reader = stub->Generate(&context, request);
    v1::GenerateResponse r;
    std::vector<int32_t> ids;
    bool finished = false;
    while (reader->Read(&r)) {
      ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
      finished = finished || r.has_finish();
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(ids, std::vector<int32_t>({100, 101}));
    EXPECT_TRUE(finished);
  }
  // The design the router's CPU per token rests on (completion_loop.h):
  // every call runs on its own loop, so gRPC's callback threads never start.
  EXPECT_EQ(ThreadsNamed(router.pid, "nexting_thread"), 0);
  EXPECT_EQ(HealthOf(channel.get(), "no.such.Service"), -1);  // NOT_FOUND
  {
    grpc::ClientContext context;
    v1::ModelInfo info;
    ASSERT_TRUE(stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
    EXPECT_EQ(info.name(), "qwen3_moe_chat");
    EXPECT_EQ(info.world_size(), 2u);
  }

  // `moeserve generate`, json and text, and its errors.
  std::string out, err;
  ASSERT_EQ(Generate({"--target", target, "--prompt-ids", "1,2", "--format", "json"}, &out, &err),
            0)
      << err;
  auto json = nlohmann::json::parse(out);
  EXPECT_EQ(json["prompt_tokens"], 2);
  EXPECT_EQ(json["token_ids"], nlohmann::json({100, 101}));
  EXPECT_EQ(json["finish_reason"], "length");
  EXPECT_TRUE(json.contains("text"));
  ASSERT_EQ(Generate({"--target", target, "--prompt", "Hello", "--chat"}, &out, &err), 0) << err;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_THAT(err, HasSubstr("2 generated, finish_reason length"));
  EXPECT_EQ(Generate({"--target", target, "--prompt-ids", "9999"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("moeserve generate: INVALID_ARGUMENT: token_ids.ids[0] is 9999"));
  EXPECT_EQ(Generate({"--target", target, "--prompt-ids", "1", "--prompt", "x"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("moeserve generate: INVALID_ARGUMENT: give exactly one"));

  // Losing a worker: NOT_SERVING until it is back (with a new epoch).
  w1.SetEpoch(6);
  w1.SetForming(1000000);
  w1.Kick();
  EXPECT_TRUE(WaitForHealth(channel.get(), 2));
  w1.SetForming(0);
  EXPECT_TRUE(WaitForHealth(channel.get(), 1));
  ASSERT_EQ(Generate({"--target", target, "--prompt-ids", "1", "--format", "json"}, &out, &err), 0)
      << err;
  EXPECT_EQ(w0.wrong_epochs() + w1.wrong_epochs(), 0);

  kill(router.pid, SIGTERM);
  EXPECT_EQ(WaitExit(router.pid, absl::Seconds(10)), 0);
  close(router.out);
  s0->Shutdown(std::chrono::system_clock::now());
  s1->Shutdown(std::chrono::system_clock::now());
}

TEST(RouterMainTest, UnreachableTargetIsUnavailable) {
  std::string out, err;
  // Port 1 on loopback: nothing listens there.
  EXPECT_EQ(
      Generate({"--target", "127.0.0.1:1", "--prompt-ids", "1", "--timeout", "5"}, &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("moeserve generate: UNAVAILABLE: "));
}

TEST(RouterMainTest, BadFlagsExitTwo) {
  Child c = Spawn({kRouter, "--workers", "a:1"}, /*capture_stderr=*/true);
  ReadAll(c.out);
  const std::string err = ReadAll(c.err);
  EXPECT_EQ(WaitExit(c.pid, absl::Seconds(10)), 2);
  EXPECT_THAT(err, HasSubstr("--model DIR is required"));
}

}  // namespace
}  // namespace router
}  // namespace moeserve
