// OpenAiHttpServer: the router's OpenAI-compatible HTTP endpoint
// (cpp-httplib from Debian's libcpp-httplib-dev).
//
//   POST /v1/completions, POST /v1/chat/completions  (stream: true → SSE)
//   GET  /v1/models, GET /health (200 when the group is ready, else 503)
//
// Each request is translated by router/openai_api.h and sent to the router's
// own moeserve.v1.Inference service through an in-process gRPC channel, so
// HTTP and gRPC share one path: validation, placement, stop strings,
// detokenization, cancellation. One httplib thread serves each connection
// while its request runs.
//
// Status codes: errors known before the first token (bad request 400, other
// model 404, full workers 429, no workers 503) answer with that status and an
// OpenAI error object. An error after a stream began ends it with an error
// event and [DONE]. A client that disconnects cancels its request: the next
// write fails (streaming), or the connection is seen closed between tokens
// (non-streaming), and the gRPC call is cancelled, which aborts the request
// on its worker. Every call has a deadline (30 minutes).
#ifndef MOESERVE_ROUTER_HTTP_SERVER_H_
#define MOESERVE_ROUTER_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "router/api_keys.h"

namespace moeserve {
namespace router {

class OpenAiHttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0: any free port
    std::string model_name;
    std::shared_ptr<grpc::Channel> channel;  // to the router's Inference service
    std::function<bool()> ready;             // the group can serve
    const ApiKeys* keys = nullptr;           // when enabled: Bearer required on /v1/*
    // PEM files: serve HTTPS instead of HTTP when both are set.
    std::string tls_cert, tls_key;
    int threads = 1024;                      // connections served at once (one thread each)
  };

  // Binds and starts serving on a thread of its own. UNAVAILABLE if the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(Options options);
  ~OpenAiHttpServer();  // Stop()

  int port() const { return port_; }
  // Stops accepting and waits for the serving thread.
  void Stop();

 private:
  struct Impl;
  explicit OpenAiHttpServer(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  int port_;
  std::thread thread_;
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_HTTP_SERVER_H_
