#include "router/worker_discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace moeserve {
namespace router {
namespace {

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::string JoinHostPort(const std::string& host, const std::string& port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::Status SplitHostPort(absl::string_view address, std::string* host, std::string* port) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker address '", address, "' is not HOST:PORT (", why, ")"));
  };
  size_t colon;
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) return bad("unclosed '['");
    *host = std::string(address.substr(1, close - 1));
    colon = close + 1;
    if (colon >= address.size() || address[colon] != ':') return bad("no port");
  } else {
    colon = address.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port");
    *host = std::string(address.substr(0, colon));
    if (host->find(':') != std::string::npos) return bad("put an IPv6 address in brackets");
  }
  *port = std::string(address.substr(colon + 1));
  int port_number;
  if (host->empty()) return bad("no host");
  if (!absl::SimpleAtoi(*port, &port_number) || port_number < 0 || port_number > 65535) {
    return bad("the port must be a number 0-65535");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseWorkerList(absl::string_view flag) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(flag, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    std::string host, port;
    if (absl::Status s = SplitHostPort(part, &host, &port); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--workers: ", s.message()));
    }
    if (port == "0") {
      return absl::InvalidArgumentError(
          absl::StrCat("--workers: worker address '", part, "' has port 0"));
    }
    std::string address(part);
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  if (out.empty()) return absl::InvalidArgumentError("--workers needs at least one HOST:PORT");
  return out;
}

Resolver SystemResolver() {
  return [](const std::string& host) -> absl::StatusOr<std::vector<std::string>> {
    struct addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* result = nullptr;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
    if (rc != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
    }
    std::set<std::string> v4, v6;
    for (struct addrinfo* a = result; a != nullptr; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN];
      if (a->ai_family == AF_INET) {
        auto* sin = reinterpret_cast<struct sockaddr_in*>(a->ai_addr);
        if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text))) v4.insert(text);
      } else if (a->ai_family == AF_INET6) {
        auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(a->ai_addr);
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text))) v6.insert(text);
      }
    }
    freeaddrinfo(result);
    const std::set<std::string>& chosen = v4.empty() ? v6 : v4;
    if (chosen.empty()) {
      return absl::UnavailableError(absl::StrCat("'", host, "' has no addresses"));
    }
    return std::vector<std::string>(chosen.begin(), chosen.end());
  };
}

WorkerDiscovery::WorkerDiscovery(std::vector<std::string> workers, Resolver resolver,
                                 Factory factory, WorkerPool* pool)
    : workers_(std::move(workers)),
      resolver_(std::move(resolver)),
      factory_(std::move(factory)),
      pool_(pool) {
  if (workers_.size() == 1 && SplitHostPort(workers_[0], &host_, &port_).ok() &&
      !IsIpLiteral(host_)) {
    dns_mode_ = true;
  }
}

WorkerDiscovery::~WorkerDiscovery() { Stop(); }

absl::Status WorkerDiscovery::Refresh() {
  std::vector<std::string> wanted = workers_;
  if (dns_mode_) {
    absl::StatusOr<std::vector<std::string>> ips = resolver_(host_);
    if (!ips.ok()) return ips.status();
    wanted.clear();
    for (const std::string& ip : *ips) wanted.push_back(JoinHostPort(ip, port_));
  }
  const std::vector<std::string> known = pool_->addresses();
  for (const std::string& address : wanted) {
    if (std::find(known.begin(), known.end(), address) == known.end()) {
      pool_->AddWorker(factory_(address));
    }
  }
  if (dns_mode_) {
    for (const std::string& address : known) {
      if (std::find(wanted.begin(), wanted.end(), address) == wanted.end() &&
          !pool_->connected(address)) {
        std::fprintf(stderr, "moeserve-router: worker %s is no longer in DNS; dropping it\n",
                     address.c_str());
        pool_->RemoveWorker(address);
      }
    }
  }
  return absl::OkStatus();
}

void WorkerDiscovery::Start(absl::Duration period) {
  thread_ = std::thread([this, period] {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), period);
        if (stopping_) return;
      }
      absl::Status s = Refresh();
      const std::string error = s.ok() ? "" : s.ToString();
      if (!error.empty() && error != last_error_) {
        std::fprintf(stderr, "moeserve-router: worker discovery: %s\n", error.c_str());
      }
      last_error_ = error;
    }
  });
}

void WorkerDiscovery::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace router
}  // namespace moeserve
