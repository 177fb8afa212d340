#include "router/request_builder.h"

#include "engine/sampler.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moeserve {
namespace router {
namespace {

bool KnownRole(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant";
}

}  // namespace

absl::StatusOr<std::unique_ptr<RequestBuilder>> RequestBuilder::Create(
    ModelConfig config, TextFiles text, const std::string& chat_format_flag,
    std::string model_name) {
  std::unique_ptr<RequestBuilder> b(
      new RequestBuilder(std::move(config), std::move(text), std::move(model_name)));
  if (!chat_format_flag.empty()) {
    auto format = ParseChatFormat(chat_format_flag);
    if (!format.ok()) return format.status();
    b->chat_format_ = *format;
  } else if (!b->text_.config.chat_template) {
    b->chat_status_ = absl::FailedPreconditionError(absl::StrCat(
        "model ", b->model_name_,
        " has no chat_template in tokenizer_config.json and the router was started without "
        "--chat-format: send text or token_ids, or restart it with "
        "--chat-format=chatml|qwen3|llama2|mistral"));
  } else {
    auto format = DetectChatFormat(*b->text_.config.chat_template);
    if (format.ok()) {
      b->chat_format_ = *format;
    } else {
      b->chat_status_ = absl::FailedPreconditionError(
          absl::StrCat("model ", b->model_name_, ": ", format.status().message()));
    }
  }
  return b;
}

RequestBuilder::RequestBuilder(ModelConfig config, TextFiles text, std::string model_name)
    : config_(std::move(config)), text_(std::move(text)), model_name_(std::move(model_name)) {
  if (text_.tokenizer && text_.config.eos_token) {
    eos_id_ = text_.tokenizer->TokenToId(*text_.config.eos_token);
  }
}

absl::Status RequestBuilder::NeedTokenizer(const char* kind) const {
  if (text_.tokenizer) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("model ", model_name_, " has no tokenizer.json, so a ", kind,
                   " prompt cannot be tokenized: send the prompt as token_ids"));
}

absl::Status RequestBuilder::CheckId(int32_t id, const std::string& field) const {
  if (id >= 0 && id < config_.vocab_size) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " is ", id, ", outside the model's vocabulary [0, ", config_.vocab_size, ")"));
}

absl::Status RequestBuilder::CheckStops(const v1::GenerateRequest& request) const {
  const auto& stop = request.stop();
  if (stop.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(absl::StrCat("stop[", kMaxStopStrings, "]: at most ",
                                                   kMaxStopStrings, " stop strings are allowed, got ",
                                                   stop.size()));
  }
  for (int i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is empty"));
    if (stop[i].size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is ", stop[i].size(),
                                                     " bytes; at most ", kMaxStopStringBytes,
                                                     " are allowed"));
    }
  }
  if (!stop.empty() && !text_.tokenizer) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", model_name_,
                     " has no tokenizer.json, so stop strings cannot be matched against the "
                     "output text: use stop_token_ids"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> RequestBuilder::BuildChatPrompt(
    const v1::ChatMessages& chat) const {
  if (absl::Status s = NeedTokenizer("chat"); !s.ok()) return s;
  if (chat.messages().empty()) return absl::InvalidArgumentError("chat.messages is empty");
  std::vector<ChatMessage> messages;
  messages.reserve(chat.messages_size());
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string field = absl::StrCat("chat.messages[", i, "].role");
    if (m.role().empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
    if (!KnownRole(m.role())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " is '", m.role(), "'; it must be one of system, user, assistant"));
    }
    messages.push_back({m.role(), m.content(), std::nullopt});
  }
  if (!chat_status_.ok()) return chat_status_;
  auto rendered = RenderChat(chat_format_, messages, !chat.no_generation_prompt(), text_.config);
  if (!rendered.ok()) {
    return absl::Status(rendered.status().code(),
                        absl::StrCat("chat: ", rendered.status().message()));
  }
  // The template holds the special tokens already, as with HF's
  // apply_chat_template(tokenize=True).
  return text_.tokenizer->Encode(*rendered, /*add_special_tokens=*/false);
}

absl::StatusOr<std::vector<int32_t>> RequestBuilder::BuildPrompt(
    const v1::GenerateRequest& request) const {
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText:
      if (request.text().empty()) return absl::InvalidArgumentError("text is empty");
      if (absl::Status s = NeedTokenizer("text"); !s.ok()) return s;
      return text_.tokenizer->Encode(request.text(), /*add_special_tokens=*/true);
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) return absl::InvalidArgumentError("token_ids.ids is empty");
      for (int i = 0; i < ids.size(); ++i) {
        if (absl::Status s = CheckId(ids[i], absl::StrCat("token_ids.ids[", i, "]")); !s.ok()) {
          return s;
        }
      }
      return std::vector<int32_t>(ids.begin(), ids.end());
    }
    case v1::GenerateRequest::kChat:
      return BuildChatPrompt(request.chat());
    case v1::GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("prompt is not set: give one of text, token_ids or chat");
}

absl::StatusOr<internal::v1::Submit> RequestBuilder::Build(
    const v1::GenerateRequest& request) const {
  const v1::SamplingParams& sp = request.sampling();
  SamplingParams sampling;
  sampling.temperature = sp.temperature();
  sampling.seed = sp.seed();
  sampling.top_k = sp.top_k();
  sampling.top_p = sp.has_top_p() ? sp.top_p() : 1.0f;
  sampling.min_p = sp.min_p();
  sampling.repetition_penalty = sp.has_repetition_penalty() ? sp.repetition_penalty() : 1.0f;
  sampling.presence_penalty = sp.presence_penalty();
  sampling.frequency_penalty = sp.frequency_penalty();
  sampling.logprobs = sp.logprobs();
  if (absl::Status s = CheckSamplingParams(sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.", s.message()));
  }
  for (int i = 0; i < request.stop_token_ids_size(); ++i) {
    if (absl::Status s =
            CheckId(request.stop_token_ids(i), absl::StrCat("stop_token_ids[", i, "]"));
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = CheckStops(request); !s.ok()) return s;
  auto prompt = BuildPrompt(request);
  if (!prompt.ok()) return prompt.status();
  if (prompt->empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (request.prompt_case() != v1::GenerateRequest::kTokenIds) {
    // A tokenizer that does not match config.json could still give bad ids.
    for (size_t i = 0; i < prompt->size(); ++i) {
      if (absl::Status s = CheckId((*prompt)[i], absl::StrCat("the tokenized prompt's id ", i));
          !s.ok()) {
        return absl::FailedPreconditionError(s.message());
      }
    }
  }
  const uint32_t max_tokens = request.max_tokens() == 0 ? kDefaultMaxTokens : request.max_tokens();
  const uint64_t needed = static_cast<uint64_t>(prompt->size()) + max_tokens;
  const int context = config_.max_position_embeddings;
  if (context > 0 && needed > static_cast<uint64_t>(context)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens: the prompt (", prompt->size(), " tokens) plus max_tokens (", max_tokens,
        ") is ", needed, ", beyond the model's context length of ", context, " tokens"));
  }

  internal::v1::Submit submit;
  submit.mutable_prompt()->Add(prompt->begin(), prompt->end());
  submit.set_max_tokens(max_tokens);
  internal::v1::Sampling* out = submit.mutable_sampling();
  out->set_temperature(sampling.temperature);
  out->set_seed(sampling.seed);
  out->set_top_k(sampling.top_k);
  out->set_top_p(sampling.top_p);
  out->set_min_p(sampling.min_p);
  out->set_repetition_penalty(sampling.repetition_penalty);
  out->set_presence_penalty(sampling.presence_penalty);
  out->set_frequency_penalty(sampling.frequency_penalty);
  out->set_logprobs(sampling.logprobs);
  submit.mutable_stop_token_ids()->CopyFrom(request.stop_token_ids());
  // Stop on the tokenizer's EOS too, as `moeserve run` and vLLM do (chat
  // models end their turn with it).
  if (eos_id_ && !request.ignore_eos()) submit.add_stop_token_ids(*eos_id_);
  submit.set_ignore_eos(request.ignore_eos());
  submit.set_priority(request.priority());
  return submit;
}

}  // namespace router
}  // namespace moeserve
