// `moeserve generate`: one completion from a running moeserve cluster, as a
// gRPC client of moeserve.v1.Inference/Generate (the router).
//
//   moeserve generate --target 127.0.0.1:50051 --prompt "Hello" --chat --max-tokens 64
//
// --format text streams the text as it arrives; --format json prints, at
// the end, the object `moeserve run --format json` prints:
// {prompt_tokens, token_ids, text, finish_reason}, plus "logprobs" with
// --logprobs N. Errors are
// `moeserve generate: CODE: message` on stderr, exit 2 for INVALID_ARGUMENT
// and 1 otherwise.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/cli_flags.h"
#include "engine/sampler.h"
#include "tools/sampling_flags.h"
#include "grpcpp/grpcpp.h"
#include "moeserve/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"

namespace moeserve {
namespace {

struct GenerateFlags {
  std::string target;
  std::string prompt;
  std::string prompt_ids;
  bool chat = false;
  std::string system;
  int max_tokens = 64;
  SamplingParams sampling;
  bool ignore_eos = false;
  int priority = 0;
  std::string tls_ca;
  std::string stop_token_ids;
  std::string stop;  // one stop string (FlagSet has no repeated flags)
  std::string format = "text";
  float timeout = 0;  // seconds; 0: none
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Status codes are google.rpc codes in both gRPC and absl.
int Fail(absl::StatusCode code, const std::string& message) {
  std::fprintf(stderr, "moeserve generate: %s: %s\n", absl::StatusCodeToString(code).c_str(),
               message.c_str());
  return code == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int Fail(const absl::Status& s) { return Fail(s.code(), std::string(s.message())); }

const char* FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    default:
      return "unspecified";
  }
}

absl::Status Validate(const GenerateFlags& f, const FlagSet& flags) {
  if (f.target.empty()) return absl::InvalidArgumentError("--target HOST:PORT is required");
  if (flags.WasSet("prompt") == flags.WasSet("prompt-ids")) {
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT and --prompt-ids 1,2,3");
  }
  if (f.chat && flags.WasSet("prompt-ids")) {
    return absl::InvalidArgumentError("--chat renders --prompt TEXT; it cannot take --prompt-ids");
  }
  if (!f.chat && flags.WasSet("system")) return absl::InvalidArgumentError("--system needs --chat");
  if (f.format != "text" && f.format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format must be text or json, got '", f.format, "'"));
  }
  if (f.max_tokens < 0) return absl::InvalidArgumentError("--max-tokens must be >= 0");
  if (absl::Status s = CheckSamplingParams(f.sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad sampling flag: ", s.message()));
  }
  if (f.timeout < 0) return absl::InvalidArgumentError("--timeout must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<v1::GenerateRequest> BuildRequest(const GenerateFlags& f, const FlagSet& flags) {
  v1::GenerateRequest request;
  if (flags.WasSet("prompt-ids")) {
    std::vector<int32_t> ids;
    if (absl::Status s = ParseIdList(f.prompt_ids, "prompt-ids", &ids); !s.ok()) return s;
    request.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  } else if (f.chat) {
    if (!f.system.empty()) {
      auto* m = request.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(f.system);
    }
    auto* m = request.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(f.prompt);
  } else {
    request.set_text(f.prompt);
  }
  if (!f.stop_token_ids.empty()) {
    std::vector<int32_t> ids;
    if (absl::Status s = ParseIdList(f.stop_token_ids, "stop-token-ids", &ids); !s.ok()) return s;
    request.mutable_stop_token_ids()->Add(ids.begin(), ids.end());
  }
  if (flags.WasSet("stop")) request.add_stop(f.stop);
  v1::SamplingParams* sp = request.mutable_sampling();
  sp->set_temperature(f.sampling.temperature);
  sp->set_seed(f.sampling.seed);
  sp->set_top_k(f.sampling.top_k);
  sp->set_top_p(f.sampling.top_p);
  sp->set_min_p(f.sampling.min_p);
  sp->set_repetition_penalty(f.sampling.repetition_penalty);
  sp->set_presence_penalty(f.sampling.presence_penalty);
  sp->set_frequency_penalty(f.sampling.frequency_penalty);
  sp->set_logprobs(f.sampling.logprobs);
  request.set_max_tokens(static_cast<uint32_t>(f.max_tokens));
  request.set_ignore_eos(f.ignore_eos);
  request.set_priority(f.priority);
  return request;
}

}  // namespace

int GenerateCommand(int argc, char** argv) {
  GenerateFlags f;
  FlagSet flags("moeserve generate",
                "Generate from a prompt on a running moeserve cluster: a gRPC client of "
                "moeserve.v1.Inference/Generate on the router at --target. The prompt is text "
                "(--prompt, optionally sent as a chat turn with --chat, rendered by the router's "
                "chat template) or token ids (--prompt-ids).");
  flags.String("target", &f.target, "HOST:PORT", "The router's gRPC address (required).");
  flags.String("prompt", &f.prompt, "TEXT", "Prompt text.");
  flags.String("prompt-ids", &f.prompt_ids, "IDS", "Prompt as comma-separated token ids.");
  flags.Bool("chat", &f.chat, "Send --prompt as a user message through the chat template.");
  flags.String("system", &f.system, "TEXT", "System message for --chat.");
  flags.Int("max-tokens", &f.max_tokens, "N", "Most tokens to generate (0: the server's 16).");
  AddSamplingFlags(flags, &f.sampling);
  flags.Bool("ignore-eos", &f.ignore_eos, "Do not stop at the model's EOS tokens.");
  flags.String("tls-ca", &f.tls_ca, "PEM",
               "Connect over TLS, trusting the certificates in this file (a router started "
               "with --tls-cert). MOESERVE_API_KEY, when set, is sent as the Bearer API key.");
  flags.Int("priority", &f.priority, "N",
            "Scheduling priority on the worker: lower runs first (default 0).");
  flags.String("stop-token-ids", &f.stop_token_ids, "IDS", "Extra token ids that end generation.");
  flags.String("stop", &f.stop, "TEXT",
               "A stop string: generation ends where the output text contains it (it and what "
               "follows are not shown; finish_reason stop).");
  flags.String("format", &f.format, "text|json",
               "text: stream the completion to stdout; json: print one JSON object at the end "
               "{prompt_tokens, token_ids, text, finish_reason[, logprobs]}, as `moeserve run` "
               "does.");
  flags.Float("timeout", &f.timeout, "SECONDS", "Deadline of the call (0: none).");
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) return Fail(s);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'")));
  }
  if (absl::Status s = Validate(f, flags); !s.ok()) return Fail(s);
  auto request = BuildRequest(f, flags);
  if (!request.ok()) return Fail(request.status());

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!f.tls_ca.empty()) {
    std::ifstream in(f.tls_ca, std::ios::binary);
    if (!in) return Fail(absl::InvalidArgumentError("cannot read --tls-ca " + f.tls_ca));
    std::ostringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
  }
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(f.target, credentials));
  grpc::ClientContext context;
  if (const char* key = std::getenv("MOESERVE_API_KEY"); key != nullptr && *key != '\0') {
    context.AddMetadata("authorization", std::string("Bearer ") + key);
  }
  if (f.timeout > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(static_cast<int64_t>(f.timeout * 1e6)));
  }
  const bool stream = f.format == "text";
  std::vector<int32_t> token_ids;
  nlohmann::json logprobs = nlohmann::json::array();
  std::string text;
  v1::Finish finish;
  bool finished = false;
  double t_first = 0;
  const double t_start = Now();
  auto reader = stub->Generate(&context, *request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (t_first == 0 && response.token_ids_size() > 0) t_first = Now();
    token_ids.insert(token_ids.end(), response.token_ids().begin(), response.token_ids().end());
    for (const v1::TokenLogprobs& lp : response.logprobs()) {
      std::vector<std::pair<int32_t, float>> top;
      for (const auto& a : lp.top()) top.emplace_back(a.id(), a.logprob());
      logprobs.push_back(LogprobsJson(lp.logprob(), top));
    }
    text += response.text();
    if (stream && !response.text().empty()) {
      std::fputs(response.text().c_str(), stdout);
      std::fflush(stdout);
    }
    if (response.has_finish()) {
      finish = response.finish();
      finished = true;
    }
  }
  const grpc::Status status = reader->Finish();
  const double t_end = Now();
  if (!status.ok()) {
    if (stream && !text.empty()) std::fputc('\n', stdout);
    std::fflush(stdout);
    return Fail(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  if (!finished) {
    if (stream && !text.empty()) std::fputc('\n', stdout);
    return Fail(absl::StatusCode::kInternal, "the stream ended without a finish message");
  }

  if (stream) {
    // A model without tokenizer.json streams ids only: show them, as `run`
    // does. (The client cannot tell that case apart from a completion of
    // special tokens only, so this is limited to --prompt-ids prompts.)
    if (text.empty() && flags.WasSet("prompt-ids")) {
      for (int32_t id : token_ids) std::printf("%d ", id);
    }
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the completion first, then the stats on stderr
    const size_t n = token_ids.size();
    const double decode_s = t_end - t_first;
    std::fprintf(stderr,
                 "[%u prompt tokens, %zu generated, finish_reason %s; time to first token "
                 "%.3f s, %.1f tokens/s after it]\n",
                 finish.usage().prompt_tokens(), n, FinishReasonName(finish.reason()),
                 t_first > 0 ? t_first - t_start : 0.0,
                 n > 1 && decode_s > 0 ? (n - 1) / decode_s : 0.0);
    return 0;
  }
  nlohmann::json out;
  out["prompt_tokens"] = finish.usage().prompt_tokens();
  out["token_ids"] = token_ids;
  out["text"] = text;
  out["finish_reason"] = FinishReasonName(finish.reason());
  if (f.sampling.logprobs > 0) out["logprobs"] = std::move(logprobs);
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace moeserve
