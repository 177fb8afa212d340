// `moeserve run`: one generation on the single-process CPU engine.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/cli_flags.h"
#include "engine/sampler.h"
#include "tools/sampling_flags.h"
#include "engine/generator.h"
#include "engine/score.h"
#include "engine/transformer.h"
#include "kernels/cpu/linear.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include "tokenizer/incremental_decoder.h"
#include "tools/commands.h"
#include "tools/model_files.h"

namespace moeserve {
namespace {

struct RunFlags {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  bool ids_given = false;  // --prompt-ids was on the command line
  bool chat = false;
  std::string system;
  std::string chat_format;
  int max_tokens = 64;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::string stop_token_ids;
  std::string format = "text";
  int threads = 0;
  bool score = false;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Progress of paging in the weights, on stderr: a live line on a terminal,
// a few lines otherwise. Quiet for small models.
std::function<void(uint64_t, uint64_t)> ProgressPrinter() {
  const bool tty = ::isatty(2);
  auto last_quarter = std::make_shared<int>(-1);
  return [tty, last_quarter](uint64_t done, uint64_t total) {
    if (total < (256u << 20)) return;
    const double gib = 1.0 / (1u << 30);
    const int pct = static_cast<int>(100.0 * done / total);
    if (tty) {
      std::fprintf(stderr, "\rloading weights: %.2f / %.2f GiB (%d%%)", done * gib, total * gib,
                   pct);
      if (done == total) std::fputc('\n', stderr);
    } else if (pct / 25 != *last_quarter) {
      *last_quarter = pct / 25;
      std::fprintf(stderr, "loading weights: %.2f / %.2f GiB (%d%%)\n", done * gib, total * gib,
                   pct);
    }
  };
}

absl::StatusOr<std::vector<int32_t>> BuildPrompt(const RunFlags& f, const TextFiles& text) {
  std::vector<int32_t> ids;
  if (f.ids_given) {
    if (absl::Status s = ParseIdList(f.prompt_ids, "prompt-ids", &ids); !s.ok()) return s;
    return ids;
  }
  if (text.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        f.model, " has no tokenizer.json: give the prompt as token ids with --prompt-ids"));
  }
  if (!f.chat) return text.tokenizer->Encode(f.prompt, /*add_special_tokens=*/true);

  if (!text.config.chat_template && f.chat_format.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(f.model, "/tokenizer_config.json has no chat_template; choose a format with "
                              "--chat-format=chatml|qwen3|llama2|mistral"));
  }
  auto format = f.chat_format.empty() ? DetectChatFormat(*text.config.chat_template)
                                      : ParseChatFormat(f.chat_format);
  if (!format.ok()) return format.status();
  std::vector<ChatMessage> messages;
  if (!f.system.empty()) messages.push_back({"system", f.system, std::nullopt});
  messages.push_back({"user", f.prompt, std::nullopt});
  auto rendered = RenderChat(*format, messages, /*add_generation_prompt=*/true, text.config);
  if (!rendered.ok()) return rendered.status();
  // The template already holds the special tokens (BOS included), as with
  // HF's apply_chat_template(tokenize=True).
  return text.tokenizer->Encode(*rendered, /*add_special_tokens=*/false);
}

absl::Status Validate(const RunFlags& f, const FlagSet& flags) {
  if (f.model.empty()) return absl::InvalidArgumentError("--model DIR is required");
  if (flags.WasSet("prompt") == flags.WasSet("prompt-ids")) {
    return absl::InvalidArgumentError("give exactly one of --prompt TEXT and --prompt-ids 1,2,3");
  }
  if (f.chat && flags.WasSet("prompt-ids")) {
    return absl::InvalidArgumentError("--chat renders --prompt TEXT; it cannot take --prompt-ids");
  }
  if (!f.chat && (!f.system.empty() || !f.chat_format.empty())) {
    return absl::InvalidArgumentError("--system and --chat-format need --chat");
  }
  if (f.format != "text" && f.format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format must be text or json, got '", f.format, "'"));
  }
  if (f.max_tokens < 0) return absl::InvalidArgumentError("--max-tokens must be >= 0");
  if (absl::Status s = CheckSamplingParams(f.sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad sampling flag: ", s.message()));
  }
  return absl::OkStatus();
}

// --score: the log-probability of each prompt token given those before it,
// and the perplexity over them (the first token is not scored).
int PrintScore(const PromptScore& score, absl::Span<const int32_t> ids, bool json) {
  if (json) {
    nlohmann::json out;
    out["prompt_tokens"] = ids.size();
    out["scored_tokens"] = score.token_logprobs.size();
    out["token_ids"] = ids;
    out["token_logprobs"] = score.token_logprobs;
    out["sum_logprob"] = score.sum_logprob();
    out["perplexity"] = score.perplexity();
    std::printf("%s\n", out.dump().c_str());
  } else {
    const size_t n = score.token_logprobs.size();
    std::printf("scored %zu of %zu tokens: sum log-prob %.6f, mean %.6f, perplexity %.6f\n", n,
                ids.size(), score.sum_logprob(), n ? score.sum_logprob() / n : 0.0,
                score.perplexity());
  }
  return 0;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "moeserve run: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace

int RunCommand(int argc, char** argv) {
  RunFlags f;
  FlagSet flags("moeserve run",
                "Generate from a prompt with the single-process CPU engine. The prompt is text "
                "(--prompt, optionally rendered with the model's chat template by --chat) or "
                "token ids (--prompt-ids, which needs no tokenizer files).");
  flags.String("model", &f.model, "DIR",
               "Hugging Face checkpoint directory: config.json, *.safetensors, and optionally "
               "tokenizer.json / tokenizer_config.json / generation_config.json.");
  flags.String("prompt", &f.prompt, "TEXT", "Prompt text.");
  flags.String("prompt-ids", &f.prompt_ids, "IDS", "Prompt as comma-separated token ids.");
  flags.Bool("chat", &f.chat, "Send --prompt as a user message through the chat template.");
  flags.String("system", &f.system, "TEXT", "System message for --chat.");
  flags.String("chat-format", &f.chat_format, "NAME",
               "Chat format instead of detecting the template: chatml, qwen3, llama2, mistral.");
  flags.Int("max-tokens", &f.max_tokens, "N", "Most tokens to generate.");
  AddSamplingFlags(flags, &f.sampling);
  flags.Bool("ignore-eos", &f.ignore_eos, "Do not stop at the model's EOS tokens.");
  flags.String("stop-token-ids", &f.stop_token_ids, "IDS", "Extra token ids that end generation.");
  flags.String("format", &f.format, "text|json",
               "text: stream the completion to stdout; json: print one JSON object at the end "
               "{prompt_tokens, token_ids, text, finish_reason}.");
  flags.Int("threads", &f.threads, "N", "CPU threads for kernels and OpenBLAS (0: all cores).");
  flags.Bool("score", &f.score,
             "Generate nothing: print the log-probability of each prompt token given the ones "
             "before it and the perplexity over them (--format json lists every token).");
  if (absl::Status s = flags.Parse(argc, argv, 2); !s.ok()) {
    std::fprintf(stderr, "moeserve run: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positional()[0], "'")));
  }
  if (absl::Status s = Validate(f, flags); !s.ok()) return Fail(s);
  f.ids_given = flags.WasSet("prompt-ids");
  kernels::cpu::SetNumThreads(f.threads);

  auto text = LoadTextFiles(f.model);
  if (!text.ok()) return Fail(text.status());
  LoadOptions load;
  load.progress = ProgressPrinter();
  const double t_load = Now();
  auto weights = LoadModel(f.model, load);
  if (!weights.ok()) return Fail(weights.status());
  const double load_s = Now() - t_load;
  auto prompt = BuildPrompt(f, *text);
  if (!prompt.ok()) return Fail(prompt.status());
  if (f.score) {
    Transformer model(**weights);
    auto score = ScorePrompt(model, *prompt);
    if (!score.ok()) return Fail(score.status());
    return PrintScore(*score, *prompt, f.format == "json");
  }

  GenerateOptions options;
  options.max_tokens = f.max_tokens;
  options.sampling = f.sampling;
  options.ignore_eos = f.ignore_eos;
  if (!f.stop_token_ids.empty()) {
    if (absl::Status s = ParseIdList(f.stop_token_ids, "stop-token-ids", &options.stop_token_ids);
        !s.ok()) {
      return Fail(s);
    }
  }
  // Stop on the tokenizer's EOS too, as vLLM does (chat models end turns with it).
  if (text->tokenizer && text->config.eos_token && !f.ignore_eos) {
    if (auto id = text->tokenizer->TokenToId(*text->config.eos_token)) {
      options.stop_token_ids.push_back(*id);
    }
  }

  Transformer model(**weights);
  const bool stream = f.format == "text";
  std::unique_ptr<IncrementalDecoder> decoder;
  if (text->tokenizer) {
    decoder = std::make_unique<IncrementalDecoder>(text->tokenizer.get(),
                                                   /*skip_special_tokens=*/true, *prompt);
  }
  double t_first = 0;
  const double t_start = Now();
  auto result = Generate(model, *prompt, options, [&](int32_t id) {
    if (t_first == 0) t_first = Now();
    if (!stream) return;
    if (decoder) {
      std::fputs(decoder->Append(id).c_str(), stdout);
    } else {
      std::printf("%d ", id);
    }
    std::fflush(stdout);
  });
  if (!result.ok()) return Fail(result.status());
  const double t_end = Now();

  if (stream) {
    if (decoder) std::fputs(decoder->Flush().c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // the completion first, then the stats on stderr
    const size_t n = result->tokens.size();
    const double decode_s = t_end - t_first;
    std::fprintf(stderr,
                 "[%d prompt tokens, %zu generated, finish_reason %s; load %.2f s, "
                 "time to first token %.3f s, %.1f tokens/s after it]\n",
                 result->prompt_tokens, n, FinishReasonName(result->finish_reason), load_s,
                 t_first > 0 ? t_first - t_start : 0.0,
                 n > 1 && decode_s > 0 ? (n - 1) / decode_s : 0.0);
    return 0;
  }
  nlohmann::json out;
  out["prompt_tokens"] = result->prompt_tokens;
  out["token_ids"] = result->tokens;
  if (text->tokenizer) out["text"] = text->tokenizer->Decode(result->tokens, true);
  out["finish_reason"] = FinishReasonName(result->finish_reason);
  if (f.sampling.logprobs > 0) {
    // Rounded to float, as the cluster sends them, so `generate` prints the same.
    nlohmann::json logprobs = nlohmann::json::array();
    for (const SampleResult& r : result->logprobs) {
      std::vector<std::pair<int32_t, float>> top;
      for (const TokenLogprob& t : r.top) top.emplace_back(t.token, static_cast<float>(t.logprob));
      logprobs.push_back(LogprobsJson(static_cast<float>(r.logprob), top));
    }
    out["logprobs"] = std::move(logprobs);
  }
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace moeserve
