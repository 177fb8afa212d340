// Chat prompts without a Jinja engine: the `chat_template` of a
// tokenizer_config.json is recognised as one of a few known families, and a
// built-in renderer produces exactly what the Jinja template produces (with
// transformers' trim_blocks/lstrip_blocks) for conversations of
// system/user/assistant (and, for Qwen3, tool) messages with text content.
//
//   MOE_ASSIGN_OR_RETURN(ChatFormat format,
//                        flag.empty() ? DetectChatFormat(*config.chat_template)
//                                     : ParseChatFormat(flag));
//   MOE_ASSIGN_OR_RETURN(std::string prompt,
//                        RenderChat(format, messages, true, config));
//
// Families (testdata/chat_golden.json holds the Jinja renderings that the
// tests compare against):
//   chatml   <|im_start|>{role}\n{content}<|im_end|>\n per message, plus
//            <|im_start|>assistant\n for the generation prompt.
//   qwen3    ChatML with Qwen3's thinking conventions: "<think>...</think>"
//            is cut out of assistant messages before the last user query,
//            kept (or taken from reasoning_content) after it; tool messages
//            are wrapped in <tool_response>; enable_thinking=false adds an
//            empty think block to the generation prompt.
//   llama2   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {reply} </s>
//            (contents stripped; roles must alternate user/assistant).
//   mistral  <s> [INST] {system}\n\n{user} [/INST] {reply}</s> (Mistral
//            Instruct v0.2/Mixtral "v1" template; roles must alternate).
// Where the template would raise_exception (or fail on an empty
// conversation) RenderChat returns InvalidArgument with the same message.
#ifndef MOESERVE_TOKENIZER_CHAT_TEMPLATE_H_
#define MOESERVE_TOKENIZER_CHAT_TEMPLATE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer_config.h"

namespace moeserve {

enum class ChatFormat { kChatMl, kQwen3, kLlama2, kMistral };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // Qwen3's `reasoning_content` field of assistant messages.
  std::optional<std::string> reasoning_content;
};

struct ChatRenderOptions {
  // Qwen3's `enable_thinking` template variable; unset means undefined.
  std::optional<bool> enable_thinking;
};

// The value --chat-format takes for `format`: "chatml", "qwen3", ...
std::string_view ChatFormatName(ChatFormat format);

// Parses a --chat-format value.
absl::StatusOr<ChatFormat> ParseChatFormat(std::string_view name);

// Recognises a chat_template; an unknown one is NotFound with a message that
// names --chat-format=chatml|qwen3|llama2|mistral.
absl::StatusOr<ChatFormat> DetectChatFormat(std::string_view template_text);

// Renders `messages`. llama2 and mistral need config.bos_token/eos_token
// (FailedPrecondition without them).
absl::StatusOr<std::string> RenderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const TokenizerConfig& config,
                                       const ChatRenderOptions& options = {});

}  // namespace moeserve

#endif  // MOESERVE_TOKENIZER_CHAT_TEMPLATE_H_
