#include "tokenizer/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "tokenizer/string_util.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

constexpr char kFlagHint[] = "--chat-format=chatml|qwen3|llama2|mistral";

// ---- Detection -------------------------------------------------------------

// The template with whitespace outside string literals removed, Jinja's
// whitespace-control dashes dropped, double-quoted literals re-quoted with
// single quotes and `x.role`/`x.content` spelled `x['role']`/`x['content']`,
// so that fingerprints survive formatting differences.
std::string Squeeze(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote != 0) {
      if (c == '\\' && i + 1 < text.size()) {
        out.push_back(c);
        out.push_back(text[++i]);
        continue;
      }
      out.push_back(c == quote ? '\'' : c);
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out.push_back('\'');
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    out.push_back(c);
  }
  const std::pair<std::string_view, std::string_view> rewrites[] = {
      {"{%-", "{%"}, {"-%}", "%}"},         {"{{-", "{{"},
      {"-}}", "}}"}, {".role", "['role']"}, {".content", "['content']"},
  };
  for (const auto& [from, to] : rewrites) {
    std::string replaced;
    size_t prev = 0;
    for (size_t pos = out.find(from); pos != std::string::npos; pos = out.find(from, prev)) {
      replaced.append(out, prev, pos - prev).append(to);
      prev = pos + from.size();
    }
    replaced.append(out, prev, std::string::npos);
    out = std::move(replaced);
  }
  return out;
}

size_t Count(std::string_view haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string_view::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

struct Fingerprint {
  ChatFormat format;
  std::vector<std::string_view> required;
  std::vector<std::string_view> forbidden;
};

const std::vector<Fingerprint>& Fingerprints() {
  static const auto* fingerprints = new std::vector<Fingerprint>{
      {ChatFormat::kQwen3,
       {"<|im_start|>", "last_query_index", "reasoning_content", "'</think>'inmessage['content']",
        "{%ifenable_thinkingisdefinedandenable_thinkingisfalse%}", "'<think>\\n\\n</think>\\n\\n'",
        "{{'<|im_start|>assistant\\n'}}"},
       {"'<|im_start|>assistant\\n<think>\\n'"}},
      {ChatFormat::kLlama2,
       {"'<<SYS>>\\n'+system_message+'\\n<</SYS>>\\n\\n'+message['content']",
        "bos_token+'[INST] '+content.strip()+' [/INST]'", "' '+content.strip()+' '+eos_token",
        "{%ifloop.index0==0andsystem_message!=false%}",
        "raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...')"},
       {"DEFAULT_SYSTEM", "USE_DEFAULT_PROMPT", "{%elifmessage['role']=='system'%}",
        "add_generation_prompt"}},
      {ChatFormat::kMistral,
       {"{{bos_token}}", "' [INST] '+system_message+'\\n\\n'+message['content']+' [/INST]'",
        "' [INST] '+message['content']+' [/INST]'", "' '+message['content']+eos_token",
        "loop.firstandsystem_messageisdefined",
        "raise_exception('After the optional system message, conversation roles "
        "must alternate"},
       {"tools", "[AVAILABLE_TOOLS]", "add_generation_prompt", "<<SYS>>"}},
  };
  return *fingerprints;
}

bool IsPlainChatMl(const std::string& squeezed) {
  const bool body = squeezed.find(
                        "{{'<|im_start|>'+message['role']+'\\n'+message['content']+"
                        "'<|im_end|>'+'\\n'}}") != std::string::npos ||
                    squeezed.find(
                        "{{'<|im_start|>'+message['role']+'\\n'+message['content']+"
                        "'<|im_end|>\\n'}}") != std::string::npos;
  const bool prompt =
      squeezed.find("{%ifadd_generation_prompt%}{{'<|im_start|>assistant\\n'}}{%endif%}") !=
      std::string::npos;
  // Nothing else is printed or computed (no default system prompt).
  return body && prompt && Count(squeezed, "{{") == 2 && Count(squeezed, "{%for") == 1 &&
         Count(squeezed, "{%if") == 1 && squeezed.find("{%set") == std::string::npos;
}

// ---- Rendering helpers (Python str semantics) ---------------------------------

// str.strip() with no argument.
std::string PyStrip(std::string_view text) {
  const std::string valid = SanitizeUtf8(text);
  const std::string_view s = valid;
  size_t begin = 0;
  while (begin < s.size()) {
    size_t next = begin;
    if (!IsPythonWhitespace(DecodeValidUtf8(s, &next))) break;
    begin = next;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (!IsPythonWhitespace(DecodeValidUtf8(s, &pos))) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

std::string_view LstripNewlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  return s;
}

std::string_view RstripNewlines(std::string_view s) {
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return s;
}

// s.split(sep)[0] and s.split(sep)[-1].
std::string_view BeforeFirst(std::string_view s, std::string_view sep) {
  const size_t pos = s.find(sep);
  return pos == std::string_view::npos ? s : s.substr(0, pos);
}

std::string_view AfterLast(std::string_view s, std::string_view sep) {
  const size_t pos = s.rfind(sep);
  return pos == std::string_view::npos ? s : s.substr(pos + sep.size());
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

absl::Status EmptyConversation() {
  // What Jinja reports for messages[0] of an empty list.
  return absl::InvalidArgumentError(
      "undefined: list object has no element 0 (the conversation is empty)");
}

// ---- Renderers -----------------------------------------------------------

std::string RenderChatMl(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    out += Concat("<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

absl::StatusOr<std::string> RenderQwen3(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt,
                                        const ChatRenderOptions& options) {
  const int n = static_cast<int>(messages.size());
  if (n == 0) return EmptyConversation();
  std::string out;
  if (messages[0].role == "system") {
    out += Concat("<|im_start|>system\n", messages[0].content, "<|im_end|>\n");
  }
  // The last user message that is not a wrapped tool response.
  int last_query_index = n - 1;
  for (int i = n - 1; i >= 0; --i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" &&
        !(StartsWith(m.content, "<tool_response>") && EndsWith(m.content, "</tool_response>"))) {
      last_query_index = i;
      break;
    }
  }
  for (int i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out += Concat("<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
    } else if (m.role == "assistant") {
      std::string_view content = m.content;
      std::string_view reasoning;
      if (m.reasoning_content) {
        reasoning = *m.reasoning_content;
      } else if (content.find("</think>") != std::string_view::npos) {
        reasoning =
            LstripNewlines(AfterLast(RstripNewlines(BeforeFirst(content, "</think>")), "<think>"));
        content = LstripNewlines(AfterLast(content, "</think>"));
      }
      if (i > last_query_index && (i == n - 1 || !reasoning.empty())) {
        out += Concat("<|im_start|>assistant\n<think>\n", RstripNewlines(LstripNewlines(reasoning)),
                      "\n</think>\n\n", LstripNewlines(content));
      } else {
        out += Concat("<|im_start|>assistant\n", content);
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += Concat("\n<tool_response>\n", m.content, "\n</tool_response>");
      if (i == n - 1 || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    }
    // Other roles (and a leading system message, printed above) print
    // nothing, as in the template.
  }
  if (add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (options.enable_thinking.has_value() && !*options.enable_thinking) {
      out += "<think>\n\n</think>\n\n";
    }
  }
  return out;
}

absl::Status NeedTokens(const TokenizerConfig& config, std::string_view family) {
  if (!config.bos_token || !config.eos_token) {
    return absl::FailedPreconditionError(Concat("the ", family,
                                                " chat format needs bos_token and eos_token in "
                                                "tokenizer_config.json"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RenderLlama2(const std::vector<ChatMessage>& messages,
                                         const TokenizerConfig& config) {
  if (messages.empty()) return EmptyConversation();
  if (absl::Status s = NeedTokens(config, "llama2"); !s.ok()) return s;
  const bool has_system = messages[0].role == "system";
  std::string out;
  for (size_t i = has_system ? 1 : 0, k = 0; i < messages.size(); ++i, ++k) {
    const ChatMessage& m = messages[i];
    if ((m.role == "user") != (k % 2 == 0)) {
      return absl::InvalidArgumentError(
          "Conversation roles must alternate user/assistant/user/assistant/...");
    }
    std::string content = m.content;
    if (k == 0 && has_system) {
      content = Concat("<<SYS>>\n", messages[0].content, "\n<</SYS>>\n\n", m.content);
    }
    if (m.role == "user") {
      out += Concat(*config.bos_token, "[INST] ", PyStrip(content), " [/INST]");
    } else if (m.role == "assistant") {
      out += Concat(" ", PyStrip(content), " ", *config.eos_token);
    }
  }
  return out;
}

absl::StatusOr<std::string> RenderMistral(const std::vector<ChatMessage>& messages,
                                          const TokenizerConfig& config) {
  if (messages.empty()) return EmptyConversation();
  if (absl::Status s = NeedTokens(config, "mistral"); !s.ok()) return s;
  const bool has_system = messages[0].role == "system";
  std::string out = *config.bos_token;
  for (size_t i = has_system ? 1 : 0, k = 0; i < messages.size(); ++i, ++k) {
    const ChatMessage& m = messages[i];
    if ((m.role == "user") != (k % 2 == 0)) {
      return absl::InvalidArgumentError(
          "After the optional system message, conversation roles must alternate "
          "user/assistant/user/assistant/...");
    }
    if (m.role == "user") {
      if (k == 0 && has_system) {
        out += Concat(" [INST] ", messages[0].content, "\n\n", m.content, " [/INST]");
      } else {
        out += Concat(" [INST] ", m.content, " [/INST]");
      }
    } else if (m.role == "assistant") {
      out += Concat(" ", m.content, *config.eos_token);
    } else {
      return absl::InvalidArgumentError(
          "Only user and assistant roles are supported, with the exception of an "
          "initial optional system message!");
    }
  }
  return out;
}

}  // namespace

std::string_view ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatMl:
      return "chatml";
    case ChatFormat::kQwen3:
      return "qwen3";
    case ChatFormat::kLlama2:
      return "llama2";
    case ChatFormat::kMistral:
      return "mistral";
  }
  return "unknown";
}

absl::StatusOr<ChatFormat> ParseChatFormat(std::string_view name) {
  for (ChatFormat format :
       {ChatFormat::kChatMl, ChatFormat::kQwen3, ChatFormat::kLlama2, ChatFormat::kMistral}) {
    if (name == ChatFormatName(format)) return format;
  }
  return absl::InvalidArgumentError(
      Concat("unknown chat format \"", name, "\"; expected ", kFlagHint));
}

absl::StatusOr<ChatFormat> DetectChatFormat(std::string_view template_text) {
  const std::string squeezed = Squeeze(template_text);
  for (const Fingerprint& fingerprint : Fingerprints()) {
    bool match = true;
    for (std::string_view part : fingerprint.required) {
      match &= squeezed.find(part) != std::string::npos;
    }
    for (std::string_view part : fingerprint.forbidden) {
      match &= squeezed.find(part) == std::string::npos;
    }
    if (match) return fingerprint.format;
  }
  if (IsPlainChatMl(squeezed)) return ChatFormat::kChatMl;
  return absl::NotFoundError(
      Concat("the tokenizer's chat_template is not one this server can render (known: "
             "plain ChatML, Qwen3, Llama-2 chat, Mistral Instruct v1); choose a format "
             "with ",
             kFlagHint));
}

absl::StatusOr<std::string> RenderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt, const TokenizerConfig& config,
                                       const ChatRenderOptions& options) {
  switch (format) {
    case ChatFormat::kChatMl:
      return RenderChatMl(messages, add_generation_prompt);
    case ChatFormat::kQwen3:
      return RenderQwen3(messages, add_generation_prompt, options);
    case ChatFormat::kLlama2:
      return RenderLlama2(messages, config);
    case ChatFormat::kMistral:
      return RenderMistral(messages, config);
  }
  return absl::InvalidArgumentError("unknown chat format");
}

}  // namespace moeserve
