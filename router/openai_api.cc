#include "router/openai_api.h"

#include <cstdint>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace router {
namespace openai {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

std::string NewId(Endpoint endpoint) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static const char kHex[] = "0123456789abcdef";
  std::string id = endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id.push_back(kHex[rng() & 15]);
  return id;
}

// A number field: absent or null leaves *out alone.
absl::Status Number(const json& body, const char* name, double lo, double hi, double* out,
                    bool* set = nullptr) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return Bad(absl::StrCat("'", name, "' must be a number"));
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) {
    return Bad(absl::StrCat("'", name, "' must be in [", lo, ", ", hi, "], got ", v));
  }
  *out = v;
  if (set != nullptr) *set = true;
  return absl::OkStatus();
}

absl::Status Integer(const json& body, const char* name, int64_t lo, int64_t hi, int64_t* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return Bad(absl::StrCat("'", name, "' must be an integer"));
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    return Bad(absl::StrCat("'", name, "' must be in [", lo, ", ", hi, "], got ", v));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status Boolean(const json& body, const char* name, bool* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Bad(absl::StrCat("'", name, "' must be true or false"));
  *out = it->get<bool>();
  return absl::OkStatus();
}

// Fields we do not serve: refused when given a non-default value.
absl::Status Unsupported(const json& body) {
  auto given = [&](const char* name) {
    auto it = body.find(name);
    return it != body.end() && !it->is_null();
  };
  int64_t n = 1;
  if (absl::Status s = Integer(body, "n", 1, 1, &n); !s.ok()) {
    return Bad("'n' must be 1: one choice per request");
  }
  int64_t best_of = 1;
  if (absl::Status s = Integer(body, "best_of", 1, 1, &best_of); !s.ok()) {
    return Bad("'best_of' must be 1");
  }
  bool echo = false;
  if (absl::Status s = Boolean(body, "echo", &echo); !s.ok()) return s;
  if (echo) return Bad("'echo' is not supported");
  if (given("logit_bias") && !body["logit_bias"].empty()) return Bad("'logit_bias' is not supported");
  if (given("suffix")) return Bad("'suffix' is not supported");
  if (given("tools") && !body["tools"].empty()) {
    return Bad("'tools' (function calling) is not supported yet");
  }
  if (given("response_format")) {
    const json& f = body["response_format"];
    if (!f.is_object() || f.value("type", "") != "text") {
      return Bad("'response_format' other than {\"type\": \"text\"} is not supported yet");
    }
  }
  auto lp = body.find("logprobs");
  if (lp != body.end() && !lp->is_null() && !(lp->is_boolean() && !lp->get<bool>()) &&
      !(lp->is_number_integer() && lp->get<int64_t>() == 0)) {
    return Bad("'logprobs' is not supported on the HTTP API yet (the gRPC API has them)");
  }
  return absl::OkStatus();
}

absl::Status Sampling(const json& body, Endpoint endpoint, v1::GenerateRequest* r) {
  v1::SamplingParams* sp = r->mutable_sampling();
  double temperature = 1.0;  // OpenAI's default
  if (absl::Status s = Number(body, "temperature", 0, 2, &temperature); !s.ok()) return s;
  sp->set_temperature(static_cast<float>(temperature));
  double top_p = 1.0;
  bool top_p_set = false;
  if (absl::Status s = Number(body, "top_p", 0, 1, &top_p, &top_p_set); !s.ok()) return s;
  if (top_p_set) {
    if (top_p <= 0) return Bad("'top_p' must be in (0, 1]");
    sp->set_top_p(static_cast<float>(top_p));
  }
  int64_t top_k = 0;
  if (absl::Status s = Integer(body, "top_k", -1, 1 << 30, &top_k); !s.ok()) return s;
  sp->set_top_k(top_k < 0 ? 0 : static_cast<int32_t>(top_k));  // vLLM: -1 is off
  double min_p = 0;
  if (absl::Status s = Number(body, "min_p", 0, 1, &min_p); !s.ok()) return s;
  sp->set_min_p(static_cast<float>(min_p));
  double presence = 0, frequency = 0, repetition = 1;
  bool repetition_set = false;
  if (absl::Status s = Number(body, "presence_penalty", -2, 2, &presence); !s.ok()) return s;
  if (absl::Status s = Number(body, "frequency_penalty", -2, 2, &frequency); !s.ok()) return s;
  if (absl::Status s = Number(body, "repetition_penalty", 0, 1e9, &repetition, &repetition_set);
      !s.ok()) {
    return s;
  }
  if (repetition_set) {
    if (repetition <= 0) return Bad("'repetition_penalty' must be > 0");
    sp->set_repetition_penalty(static_cast<float>(repetition));
  }
  sp->set_presence_penalty(static_cast<float>(presence));
  sp->set_frequency_penalty(static_cast<float>(frequency));
  auto seed = body.find("seed");
  if (seed != body.end() && !seed->is_null()) {
    if (!seed->is_number_integer()) return Bad("'seed' must be an integer");
    sp->set_seed(static_cast<uint64_t>(seed->get<int64_t>()));
  }

  int64_t max_tokens = 16;  // OpenAI's completions default
  if (endpoint == Endpoint::kChat) max_tokens = 0;  // unset: the router's default
  if (absl::Status s = Integer(body, "max_tokens", 1, 1 << 30, &max_tokens); !s.ok()) return s;
  if (endpoint == Endpoint::kChat) {
    if (absl::Status s = Integer(body, "max_completion_tokens", 1, 1 << 30, &max_tokens); !s.ok()) {
      return s;
    }
  }
  r->set_max_tokens(static_cast<uint32_t>(max_tokens));

  auto stop = body.find("stop");
  if (stop != body.end() && !stop->is_null()) {
    if (stop->is_string()) {
      r->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) return Bad("'stop' must be a string or a list of strings");
        r->add_stop(s.get<std::string>());
      }
    } else {
      return Bad("'stop' must be a string or a list of strings");
    }
  }
  auto stop_ids = body.find("stop_token_ids");
  if (stop_ids != body.end() && !stop_ids->is_null()) {
    if (!stop_ids->is_array()) return Bad("'stop_token_ids' must be a list of integers");
    for (const json& id : *stop_ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return Bad("'stop_token_ids' must be a list of integers in [0, 2^31)");
      }
      r->add_stop_token_ids(static_cast<int32_t>(id.get<int64_t>()));
    }
  }
  bool ignore_eos = false;
  if (absl::Status s = Boolean(body, "ignore_eos", &ignore_eos); !s.ok()) return s;
  r->set_ignore_eos(ignore_eos);
  int64_t priority = 0;
  if (absl::Status s = Integer(body, "priority", INT32_MIN, INT32_MAX, &priority); !s.ok()) {
    return s;
  }
  r->set_priority(static_cast<int32_t>(priority));
  return absl::OkStatus();
}

absl::Status Prompt(const json& body, v1::GenerateRequest* r) {
  auto p = body.find("prompt");
  if (p == body.end() || p->is_null()) return Bad("'prompt' is required");
  if (p->is_string()) {
    r->set_text(p->get<std::string>());
    return absl::OkStatus();
  }
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
    r->set_text((*p)[0].get<std::string>());
    return absl::OkStatus();
  }
  if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    for (const json& id : *p) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return Bad("'prompt' token ids must all be integers in [0, 2^31)");
      }
      r->mutable_token_ids()->add_ids(static_cast<int32_t>(id.get<int64_t>()));
    }
    return absl::OkStatus();
  }
  if (p->is_array() && p->size() > 1) {
    return Bad("'prompt' must be one string or one list of token ids: one prompt per request");
  }
  return Bad("'prompt' must be a string or a list of token ids");
}

absl::Status Messages(const json& body, v1::GenerateRequest* r) {
  auto m = body.find("messages");
  if (m == body.end() || !m->is_array() || m->empty()) {
    return Bad("'messages' must be a non-empty list");
  }
  v1::ChatMessages* chat = r->mutable_chat();
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = absl::StrCat("'messages[", i, "]");
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      return Bad(where + "' needs a string 'role'");
    }
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(msg["role"].get<std::string>());
    const json content = msg.value("content", json());
    if (content.is_string()) {
      out->set_content(content.get<std::string>());
    } else if (content.is_array()) {
      // [{"type": "text", "text": "..."}]: the text parts joined.
      std::string text;
      for (const json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return Bad(where + ".content' parts must be {\"type\": \"text\", \"text\": ...}");
        }
        text += part["text"].get<std::string>();
      }
      out->set_content(text);
    } else if (!content.is_null()) {
      return Bad(where + ".content' must be a string or a list of text parts");
    }
  }
  bool add_generation_prompt = true;
  if (absl::Status s = Boolean(body, "add_generation_prompt", &add_generation_prompt); !s.ok()) {
    return s;
  }
  chat->set_no_generation_prompt(!add_generation_prompt);
  return absl::OkStatus();
}

const char* FinishReasonName(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_STOP ? "stop" : "length";
}

json Usage(const v1::Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens()},
          {"completion_tokens", u.completion_tokens()},
          {"total_tokens", u.prompt_tokens() + u.completion_tokens()}};
}

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 404:
      return "NotFoundError";
    case 429:
      return "RateLimitError";
    case 501:
      return "NotImplementedError";
    case 503:
      return "ServiceUnavailableError";
    case 504:
      return "TimeoutError";
    default:
      return "InternalServerError";
  }
}

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<ParsedRequest> ParseRequest(Endpoint endpoint, const std::string& body,
                                           const std::string& model_name) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("the request body is not valid JSON");
  if (!j.is_object()) return Bad("the request body must be a JSON object");
  auto model = j.find("model");
  if (model == j.end() || !model->is_string()) return Bad("'model' (a string) is required");
  if (model->get<std::string>() != model_name) {
    return absl::NotFoundError(absl::StrCat("The model `", model->get<std::string>(),
                                            "` does not exist; this server serves `", model_name,
                                            "`"));
  }
  ParsedRequest out;
  if (absl::Status s = Unsupported(j); !s.ok()) return s;
  if (absl::Status s = endpoint == Endpoint::kChat ? Messages(j, &out.request)
                                                    : Prompt(j, &out.request);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Sampling(j, endpoint, &out.request); !s.ok()) return s;
  if (absl::Status s = Boolean(j, "stream", &out.stream); !s.ok()) return s;
  auto options = j.find("stream_options");
  if (options != j.end() && !options->is_null()) {
    if (!options->is_object()) return Bad("'stream_options' must be an object");
    if (absl::Status s = Boolean(*options, "include_usage", &out.include_usage); !s.ok()) {
      return s;
    }
  }
  out.request.set_request_id(NewId(endpoint));
  return out;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorBody(int http_status, const std::string& message) {
  return Dump({{"error",
                {{"message", message},
                 {"type", ErrorType(http_status)},
                 {"param", nullptr},
                 {"code", http_status}}}});
}

std::string ErrorBody(const absl::Status& status) {
  return ErrorBody(HttpStatusFor(status.code()), std::string(status.message()));
}

std::string ModelsBody(const std::string& model_name, int64_t created) {
  return Dump({{"object", "list"},
               {"data",
                {{{"id", model_name},
                  {"object", "model"},
                  {"created", created},
                  {"owned_by", "moeserve"},
                  {"root", model_name}}}}});
}

ResponseBuilder::ResponseBuilder(Endpoint endpoint, std::string model_name, std::string id,
                                 int64_t created)
    : endpoint_(endpoint), model_name_(std::move(model_name)), id_(std::move(id)),
      created_(created) {}

void ResponseBuilder::Add(const v1::GenerateResponse& message) {
  text_ += message.text();
  if (message.has_finish()) {
    finished_ = true;
    finish_ = message.finish();
  }
}

std::string ResponseBuilder::Body() const {
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", finished_ ? json(FinishReasonName(finish_.reason())) : json()}};
  if (endpoint_ == Endpoint::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = text_;
  }
  return Dump({{"id", id_},
               {"object", endpoint_ == Endpoint::kChat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", model_name_},
               {"choices", json::array({choice})},
               {"usage", Usage(finish_.usage())}});
}

std::string ResponseBuilder::Chunk(const std::string& text, const char* finish_reason,
                                   bool first) const {
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", finish_reason ? json(finish_reason) : json()}};
  if (endpoint_ == Endpoint::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return "data: " +
         Dump({{"id", id_},
               {"object",
                endpoint_ == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
               {"created", created_},
               {"model", model_name_},
               {"choices", json::array({choice})}}) +
         "\n\n";
}

std::string ResponseBuilder::StreamEvents(const v1::GenerateResponse& message,
                                          bool include_usage) {
  std::string out;
  const bool first = !sent_first_;
  sent_first_ = true;
  if (!message.has_finish()) {
    if (message.text().empty() && !first) return out;  // ids only (held-back text)
    out += Chunk(message.text(), nullptr, first);
    return out;
  }
  // The last message: its text (if any) with the finish reason, then usage.
  if (first && endpoint_ == Endpoint::kChat) {
    out += Chunk("", nullptr, /*first=*/true);
  }
  out += Chunk(message.text(), FinishReasonName(message.finish().reason()), false);
  if (include_usage) {
    out += "data: " +
           Dump({{"id", id_},
                 {"object",
                  endpoint_ == Endpoint::kChat ? "chat.completion.chunk" : "text_completion"},
                 {"created", created_},
                 {"model", model_name_},
                 {"choices", json::array()},
                 {"usage", Usage(message.finish().usage())}}) +
           "\n\n";
  }
  return out;
}

std::string ResponseBuilder::StreamError(const absl::Status& status) {
  return "data: " + ErrorBody(status) + "\n\n" + StreamDone();
}

}  // namespace openai
}  // namespace router
}  // namespace moeserve
