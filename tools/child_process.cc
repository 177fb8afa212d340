#include "tools/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moeserve {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::string& name, const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);  // the launcher already died
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fds[1], 1);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(name, pid, fds[0]));
}

ChildProcess::~ChildProcess() {
  Stop(std::chrono::milliseconds(2000));
  if (forwarder_.joinable()) forwarder_.join();
  if (out_fd_ >= 0) ::close(out_fd_);
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(
    const std::string& prefix, std::chrono::steady_clock::time_point deadline,
    const std::function<bool()>& interrupted) {
  while (true) {
    size_t nl;
    while ((nl = buffer_.find('\n')) != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.rfind(prefix, 0) == 0) return line;
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    if (interrupted && interrupted()) return absl::CancelledError("interrupted");
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(name_, " was not ready in time (no '", prefix, "' line)"));
    }
    pollfd p{out_fd_, POLLIN, 0};
    const int ms = static_cast<int>(std::min<int64_t>(
        100, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1));
    if (::poll(&p, 1, ms) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(out_fd_, chunk, sizeof chunk);
    if (n > 0) {
      buffer_.append(chunk, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    reaped_ = true;
    status_ = status;
    return absl::UnavailableError(
        absl::StrCat(name_, " exited during start-up (", DescribeWaitStatus(status), ")"));
  }
}

void ChildProcess::ForwardOutput() {
  if (!buffer_.empty()) std::fputs(buffer_.c_str(), stderr);
  buffer_.clear();
  const int fd = out_fd_;
  forwarder_ = std::thread([fd] {
    char chunk[4096];
    ssize_t n;
    while ((n = ::read(fd, chunk, sizeof chunk)) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      std::fwrite(chunk, 1, n, stderr);
    }
  });
}

bool ChildProcess::Exited(int* status) {
  if (!reaped_) {
    int s = 0;
    if (::waitpid(pid_, &s, WNOHANG) != pid_) return false;
    reaped_ = true;
    status_ = s;
  }
  if (status) *status = status_;
  return true;
}

int ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (Exited(nullptr)) return status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Exited(nullptr)) return status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "moeserve local: %s did not stop in time; killing it\n", name_.c_str());
  ::kill(pid_, SIGKILL);
  int s = 0;
  ::waitpid(pid_, &s, 0);
  reaped_ = true;
  status_ = s;
  return status_;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("wait status ", status);
}

}  // namespace moeserve
