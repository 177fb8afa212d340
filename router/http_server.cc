// The only translation unit that includes httplib.h (a large header).
#include "router/http_server.h"

#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "moeserve/v1/inference.grpc.pb.h"
#include "router/openai_api.h"

namespace moeserve {
namespace router {
namespace {

constexpr auto kCallDeadline = std::chrono::minutes(30);

absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void SendError(httplib::Response& res, const absl::Status& status) {
  res.status = openai::HttpStatusFor(status.code());
  res.set_content(openai::ErrorBody(status), "application/json");
}

int64_t UnixNow() { return static_cast<int64_t>(std::time(nullptr)); }

// Debian's libcpp-httplib is compiled with a listen backlog of 5
// (CPPHTTPLIB_LISTEN_BACKLOG), so a burst of connections overflows it and
// clients see resets. listen() again on the bound socket raises it; httplib
// does not expose the descriptor, so find the listening socket on `port`.
void RaiseListenBacklog(int port) {
  for (int fd = 0; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) {
      bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    }
    if (bound == port) listen(fd, SOMAXCONN);
  }
}

// One request's gRPC call, shared by the handler and its stream provider.
struct Call {
  Call(openai::Endpoint endpoint, const std::string& model, const std::string& id)
      : out(endpoint, model, id, UnixNow()) {}
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  openai::ResponseBuilder out;
  v1::GenerateResponse first;
  bool finished = false;  // reader->Finish() was called
};

}  // namespace

struct OpenAiHttpServer::Impl {
  Options options;
  std::unique_ptr<v1::Inference::Stub> stub;
  std::unique_ptr<httplib::Server> server;  // an SSLServer with TLS

  void Handle(openai::Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  // False (after answering 401) when keys are on and the request lacks one.
  bool Authorized(const httplib::Request& req, httplib::Response& res) const {
    if (options.keys == nullptr || options.keys->Allows(req.get_header_value("Authorization"))) {
      return true;
    }
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(openai::ErrorBody(401, "this server needs an API key: send the header "
                                           "'Authorization: Bearer KEY'"),
                    "application/json");
    return false;
  }
};

void OpenAiHttpServer::Impl::Handle(openai::Endpoint endpoint, const httplib::Request& req,
                                    httplib::Response& res) {
  if (!Authorized(req, res)) return;
  auto parsed = openai::ParseRequest(endpoint, req.body, options.model_name);
  if (!parsed.ok()) return SendError(res, parsed.status());
  auto call = std::make_shared<Call>(endpoint, options.model_name, parsed->request.request_id());
  if (options.keys != nullptr && options.keys->enabled()) {
    // Checked above; the gRPC service checks it again.
    call->ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
  }
  call->ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  call->reader = stub->Generate(&call->ctx, parsed->request);
  // The first message or the end, so that early errors get their status.
  if (!call->reader->Read(&call->first)) {
    const grpc::Status st = call->reader->Finish();
    call->finished = true;
    return SendError(res, st.ok() ? absl::InternalError("the stream ended without an answer")
                                  : ToAbsl(st));
  }

  if (!parsed->stream) {
    // Whole answer: read to the end here, so an error still gets its status.
    call->out.Add(call->first);
    v1::GenerateResponse m;
    while (call->reader->Read(&m)) call->out.Add(m);
    const grpc::Status st = call->reader->Finish();
    call->finished = true;
    if (!st.ok()) return SendError(res, ToAbsl(st));
    res.set_content(call->out.Body(), "application/json");
    return;
  }

  const bool usage = parsed->include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [call, usage](size_t /*offset*/, httplib::DataSink& sink) {
        auto write = [&sink](const std::string& s) {
          return s.empty() || sink.write(s.data(), s.size());
        };
        // A failed write means the client left: cancel (aborts on the worker).
        if (!write(call->out.StreamEvents(call->first, usage))) {
          call->ctx.TryCancel();
          return false;
        }
        v1::GenerateResponse m;
        while (call->reader->Read(&m)) {
          if (!write(call->out.StreamEvents(m, usage))) {
            call->ctx.TryCancel();
            return false;
          }
        }
        const grpc::Status st = call->reader->Finish();
        call->finished = true;
        write(st.ok() ? openai::ResponseBuilder::StreamDone()
                      : openai::ResponseBuilder::StreamError(ToAbsl(st)));
        sink.done();
        return true;
      },
      [call](bool /*success*/) {
        // Unfinished (the client left, or the server stops): cancel, then
        // drain so the call's resources go.
        if (!call->finished) {
          call->ctx.TryCancel();
          v1::GenerateResponse m;
          while (call->reader->Read(&m)) {
          }
          call->reader->Finish();
          call->finished = true;
        }
      });
}

OpenAiHttpServer::OpenAiHttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {
  thread_ = std::thread([this] { impl_->server->listen_after_bind(); });
}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

void OpenAiHttpServer::Stop() {
  if (!thread_.joinable()) return;
  impl_->server->stop();
  thread_.join();
}

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(Options options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->stub = v1::Inference::NewStub(impl->options.channel);
  if (!impl->options.tls_cert.empty()) {
    auto tls = std::make_unique<httplib::SSLServer>(impl->options.tls_cert.c_str(),
                                                    impl->options.tls_key.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot serve HTTPS with certificate ", impl->options.tls_cert, " and key ",
          impl->options.tls_key, " (unreadable or not a matching PEM pair)"));
    }
    impl->server = std::move(tls);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  Impl* p = impl.get();
  const int threads = std::max(1, p->options.threads);
  p->server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  p->server->set_payload_max_length(16u << 20);
  // Not httplib's default SO_REUSEPORT: a port in use must fail to bind.
  p->server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  p->server->set_read_timeout(60);

  p->server->Post("/v1/completions", [p](const httplib::Request& req, httplib::Response& res) {
    p->Handle(openai::Endpoint::kCompletions, req, res);
  });
  p->server->Post("/v1/chat/completions",
                 [p](const httplib::Request& req, httplib::Response& res) {
                   p->Handle(openai::Endpoint::kChat, req, res);
                 });
  const int64_t started = UnixNow();
  p->server->Get("/v1/models", [p, started](const httplib::Request& req, httplib::Response& res) {
    if (!p->Authorized(req, res)) return;
    res.set_content(openai::ModelsBody(p->options.model_name, started), "application/json");
  });
  p->server->Get("/health", [p](const httplib::Request&, httplib::Response& res) {
    const bool ready = p->options.ready && p->options.ready();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "{\"status\":\"ok\"}" : "{\"status\":\"not ready\"}",
                    "application/json");
  });
  // Unknown paths and methods: an OpenAI error object, not httplib's page.
  p->server->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status > 0 ? res.status : 404;
    res.set_content(
        openai::ErrorBody(status, absl::StrCat("no route for ", req.method, " ", req.path)),
        "application/json");
  });

  int port = p->options.port;
  if (port == 0) {
    port = p->server->bind_to_any_port(p->options.host);
  } else if (!p->server->bind_to_port(p->options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", p->options.host, ":", p->options.port));
  }
  RaiseListenBacklog(port);
  return std::unique_ptr<OpenAiHttpServer>(new OpenAiHttpServer(std::move(impl), port));
}

}  // namespace router
}  // namespace moeserve
