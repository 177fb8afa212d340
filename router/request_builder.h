// RequestBuilder: turns a public GenerateRequest into the worker's Submit,
// or into a status that names the bad field. It holds what the router knows
// about the model (config.json, tokenizer.json, tokenizer_config.json) and
// tokenizes the way `moeserve run` does:
//   text      Encode(text, add_special_tokens = true)
//   chat      RenderChat(format, messages, !no_generation_prompt), then
//             Encode(rendered, add_special_tokens = false)
//   token_ids used as given
// and adds the tokenizer's EOS id to the stop ids unless ignore_eos.
//
//   MOE_ASSIGN_OR_RETURN(auto builder,
//                        RequestBuilder::Create(config, std::move(text), flag, "Qwen3-30B"));
//   absl::StatusOr<internal::v1::Submit> submit = builder->Build(request);
//
// Errors: INVALID_ARGUMENT for anything wrong with the request (the message
// names the field: "text", "token_ids.ids[3]", "chat.messages[1].role",
// "sampling.temperature", "max_tokens", "stop_token_ids[0]", "stop[2]"),
// FAILED_PRECONDITION when the model cannot serve that kind of prompt (no
// tokenizer.json for text, chat or stop strings; chat without a recognised chat template or
// --chat-format). Thread-safe: Build is const and the tokenizer is.
#ifndef MOESERVE_ROUTER_REQUEST_BUILDER_H_
#define MOESERVE_ROUTER_REQUEST_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"
#include "moeserve/internal/v1/worker.pb.h"
#include "moeserve/v1/inference.pb.h"
#include "tokenizer/chat_template.h"
#include "tools/model_files.h"

namespace moeserve {
namespace router {

// max_tokens when the request leaves it 0.
inline constexpr uint32_t kDefaultMaxTokens = 16;
// Limits on GenerateRequest.stop; they bound the router's matching work per
// streamed token.
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

class RequestBuilder {
 public:
  // `chat_format_flag`: a --chat-format value, or empty to recognise the
  // tokenizer_config.json chat_template (a bad flag value is an error here;
  // an unknown template only fails chat requests). `model_name` is used in
  // messages.
  static absl::StatusOr<std::unique_ptr<RequestBuilder>> Create(ModelConfig config, TextFiles text,
                                                                const std::string& chat_format_flag,
                                                                std::string model_name);

  // The worker's Submit for `request`, request_id left 0.
  absl::StatusOr<internal::v1::Submit> Build(const v1::GenerateRequest& request) const;

  const ModelConfig& config() const { return config_; }
  const Tokenizer* tokenizer() const { return text_.tokenizer.get(); }
  // OK when chat prompts can be rendered; else why not.
  const absl::Status& chat_status() const { return chat_status_; }

 private:
  RequestBuilder(ModelConfig config, TextFiles text, std::string model_name);

  absl::StatusOr<std::vector<int32_t>> BuildPrompt(const v1::GenerateRequest& request) const;
  absl::StatusOr<std::vector<int32_t>> BuildChatPrompt(const v1::ChatMessages& chat) const;
  absl::Status NeedTokenizer(const char* kind) const;
  // INVALID_ARGUMENT naming stop[i] for too many, empty or too long stop
  // strings; FAILED_PRECONDITION for stop strings without a tokenizer.
  absl::Status CheckStops(const v1::GenerateRequest& request) const;
  // INVALID_ARGUMENT naming `field` if `id` is outside [0, vocab_size).
  absl::Status CheckId(int32_t id, const std::string& field) const;

  ModelConfig config_;
  TextFiles text_;
  std::string model_name_;
  ChatFormat chat_format_ = ChatFormat::kChatMl;
  absl::Status chat_status_;
  std::optional<int32_t> eos_id_;  // the tokenizer's EOS token, if it names one
};

}  // namespace router
}  // namespace moeserve

#endif  // MOESERVE_ROUTER_REQUEST_BUILDER_H_
