// Tokenizer::FromJson and FromFile: maps a tokenizer.json document onto the
// tokenizer's parts, naming the file and the field on every error.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/string_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kNormalizerTypes =
    "NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace, Sequence";
constexpr std::string_view kPreTokenizerTypes = "ByteLevel, Split, Metaspace, Digits, Sequence";
constexpr std::string_view kDecoderTypes =
    "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence";
constexpr std::string_view kPostProcessorTypes =
    "TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence";

class Loader {
 public:
  explicit Loader(std::string_view source) : f_(source) {}

  absl::StatusOr<Tokenizer::Parts> Load(std::string_view text) {
    MOE_ASSIGN_OR_RETURN(Json root, f_.Parse(text));
    MOE_RETURN_IF_ERROR(f_.ExpectObject(root, ""));
    Tokenizer::Parts parts;
    if (JsonFields::Has(root, "normalizer")) {
      MOE_ASSIGN_OR_RETURN(parts.normalizer, Normalizer(root["normalizer"], "normalizer"));
    }
    if (JsonFields::Has(root, "pre_tokenizer")) {
      MOE_ASSIGN_OR_RETURN(parts.pre_tokenizer,
                           PreTokenizer(root["pre_tokenizer"], "pre_tokenizer"));
    }
    MOE_ASSIGN_OR_RETURN(const Json* model, f_.Member(root, "model", ""));
    MOE_ASSIGN_OR_RETURN(parts.model, Model(*model, "model"));
    if (JsonFields::Has(root, "added_tokens")) {
      MOE_ASSIGN_OR_RETURN(parts.added_tokens, AddedTokens(root["added_tokens"], "added_tokens"));
    }
    if (JsonFields::Has(root, "post_processor")) {
      MOE_ASSIGN_OR_RETURN(parts.post_processor,
                           PostProcessor(root["post_processor"], "post_processor", parts));
    }
    if (JsonFields::Has(root, "decoder")) {
      MOE_ASSIGN_OR_RETURN(parts.decoder, Decoder(root["decoder"], "decoder"));
    }
    return parts;
  }

 private:
  absl::StatusOr<std::string> Type(const Json& node, std::string_view where) {
    return f_.String(node, "type", where);
  }

  absl::Status Unsupported(std::string_view where, std::string_view kind, std::string_view type,
                           std::string_view supported) {
    return f_.Error(JsonFields::Path(where, "type"),
                    Concat("unsupported ", kind, " \"", type, "\" (supported: ", supported, ")"));
  }

  // {"String": "..."} or {"Regex": "..."}.
  absl::StatusOr<Pattern> ParsePattern(const Json& node, std::string_view where) {
    const std::string path = JsonFields::Path(where, "pattern");
    MOE_ASSIGN_OR_RETURN(const Json* pattern, f_.Member(node, "pattern", where));
    if (JsonFields::Has(*pattern, "String")) {
      MOE_ASSIGN_OR_RETURN(std::string literal, f_.String(*pattern, "String", path));
      return Pattern::Literal(std::move(literal));
    }
    if (JsonFields::Has(*pattern, "Regex")) {
      MOE_ASSIGN_OR_RETURN(std::string regex, f_.String(*pattern, "Regex", path));
      auto compiled = Pattern::Regex(regex);
      if (!compiled.ok()) {
        return f_.Error(JsonFields::Path(path, "Regex"), std::string(compiled.status().message()));
      }
      return std::move(*compiled);
    }
    return f_.Error(path, "expected {\"String\": ...} or {\"Regex\": ...}");
  }

  // A single character, as HF's `char` fields (Metaspace replacement).
  absl::StatusOr<std::string> OneChar(const Json& node, std::string_view key,
                                      std::string_view where) {
    MOE_ASSIGN_OR_RETURN(std::string value, f_.String(node, key, where));
    if (CountUtf8Chars(value) != 1) {
      return f_.Error(JsonFields::Path(where, key),
                      Concat("expected one character, found \"", value, "\""));
    }
    return value;
  }

  // Metaspace's prepend_scheme, or the add_prefix_space of older files.
  absl::StatusOr<PrependScheme> Scheme(const Json& node, std::string_view where) {
    MOE_ASSIGN_OR_RETURN(auto scheme, f_.OptionalString(node, "prepend_scheme", where));
    if (!scheme) {
      MOE_ASSIGN_OR_RETURN(bool add_prefix_space, f_.Bool(node, "add_prefix_space", true, where));
      return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    if (*scheme == "first") return PrependScheme::kFirst;
    if (*scheme == "always") return PrependScheme::kAlways;
    if (*scheme == "never") return PrependScheme::kNever;
    return f_.Error(JsonFields::Path(where, "prepend_scheme"),
                    Concat("expected first, always or never, found \"", *scheme, "\""));
  }

  template <typename T, typename F>
  absl::StatusOr<std::vector<std::unique_ptr<T>>> List(const Json& node, std::string_view key,
                                                       std::string_view where, F parse_one) {
    MOE_ASSIGN_OR_RETURN(const Json* list, f_.Member(node, key, where));
    const std::string path = JsonFields::Path(where, key);
    MOE_RETURN_IF_ERROR(f_.ExpectArray(*list, path));
    std::vector<std::unique_ptr<T>> steps;
    for (size_t i = 0; i < list->size(); ++i) {
      MOE_ASSIGN_OR_RETURN(auto step, parse_one((*list)[i], JsonFields::Index(path, i)));
      steps.push_back(std::move(step));
    }
    return steps;
  }

  absl::StatusOr<std::unique_ptr<moeserve::Normalizer>> Normalizer(const Json& node,
                                                                   std::string_view where) {
    MOE_ASSIGN_OR_RETURN(std::string type, Type(node, where));
    if (type == "NFC") return NewUnicodeNormalizer(UnicodeForm::kNfc);
    if (type == "NFD") return NewUnicodeNormalizer(UnicodeForm::kNfd);
    if (type == "NFKC") return NewUnicodeNormalizer(UnicodeForm::kNfkc);
    if (type == "NFKD") return NewUnicodeNormalizer(UnicodeForm::kNfkd);
    if (type == "Lowercase") return NewLowercaseNormalizer();
    if (type == "Strip") {
      MOE_ASSIGN_OR_RETURN(bool left, f_.Bool(node, "strip_left", true, where));
      MOE_ASSIGN_OR_RETURN(bool right, f_.Bool(node, "strip_right", true, where));
      return NewStripNormalizer(left, right);
    }
    if (type == "Prepend") {
      MOE_ASSIGN_OR_RETURN(std::string prepend, f_.String(node, "prepend", where));
      return NewPrependNormalizer(std::move(prepend));
    }
    if (type == "Replace") {
      MOE_ASSIGN_OR_RETURN(Pattern pattern, ParsePattern(node, where));
      MOE_ASSIGN_OR_RETURN(std::string content, f_.String(node, "content", where));
      return NewReplaceNormalizer(std::move(pattern), std::move(content));
    }
    if (type == "Sequence") {
      MOE_ASSIGN_OR_RETURN(
          auto steps, List<moeserve::Normalizer>(
                          node, "normalizers", where,
                          [&](const Json& n, const std::string& w) { return Normalizer(n, w); }));
      return NewSequenceNormalizer(std::move(steps));
    }
    return Unsupported(where, "normalizer", type, kNormalizerTypes);
  }

  absl::StatusOr<std::unique_ptr<moeserve::PreTokenizer>> PreTokenizer(const Json& node,
                                                                       std::string_view where) {
    MOE_ASSIGN_OR_RETURN(std::string type, Type(node, where));
    if (type == "ByteLevel") {
      MOE_ASSIGN_OR_RETURN(bool prefix, f_.Bool(node, "add_prefix_space", true, where));
      MOE_ASSIGN_OR_RETURN(bool use_regex, f_.Bool(node, "use_regex", true, where));
      return NewByteLevelPreTokenizer(prefix, use_regex);
    }
    if (type == "Split") {
      MOE_ASSIGN_OR_RETURN(Pattern pattern, ParsePattern(node, where));
      MOE_ASSIGN_OR_RETURN(std::string behavior, f_.String(node, "behavior", where));
      MOE_ASSIGN_OR_RETURN(bool invert, f_.Bool(node, "invert", false, where));
      SplitBehavior b;
      if (behavior == "Removed") {
        b = SplitBehavior::kRemoved;
      } else if (behavior == "Isolated") {
        b = SplitBehavior::kIsolated;
      } else if (behavior == "MergedWithPrevious") {
        b = SplitBehavior::kMergedWithPrevious;
      } else if (behavior == "MergedWithNext") {
        b = SplitBehavior::kMergedWithNext;
      } else if (behavior == "Contiguous") {
        b = SplitBehavior::kContiguous;
      } else {
        return f_.Error(JsonFields::Path(where, "behavior"),
                        Concat("unknown behavior \"", behavior,
                               "\" (expected Removed, Isolated, "
                               "MergedWithPrevious, MergedWithNext or "
                               "Contiguous)"));
      }
      return NewSplitPreTokenizer(std::move(pattern), b, invert);
    }
    if (type == "Metaspace") {
      MOE_ASSIGN_OR_RETURN(std::string replacement, OneChar(node, "replacement", where));
      MOE_ASSIGN_OR_RETURN(PrependScheme scheme, Scheme(node, where));
      MOE_ASSIGN_OR_RETURN(bool split, f_.Bool(node, "split", true, where));
      return NewMetaspacePreTokenizer(std::move(replacement), scheme, split);
    }
    if (type == "Digits") {
      MOE_ASSIGN_OR_RETURN(bool individual, f_.Bool(node, "individual_digits", false, where));
      return NewDigitsPreTokenizer(individual);
    }
    if (type == "Sequence") {
      MOE_ASSIGN_OR_RETURN(
          auto steps, List<moeserve::PreTokenizer>(
                          node, "pretokenizers", where,
                          [&](const Json& n, const std::string& w) { return PreTokenizer(n, w); }));
      return NewSequencePreTokenizer(std::move(steps));
    }
    return Unsupported(where, "pre_tokenizer", type, kPreTokenizerTypes);
  }

  absl::StatusOr<std::unique_ptr<BpeModel>> Model(const Json& node, std::string_view where) {
    MOE_RETURN_IF_ERROR(f_.ExpectObject(node, where));
    if (JsonFields::Has(node, "type")) {
      MOE_ASSIGN_OR_RETURN(std::string type, Type(node, where));
      if (type != "BPE") return Unsupported(where, "model", type, "BPE");
    }
    if (JsonFields::Has(node, "dropout")) {
      const Json& dropout = node["dropout"];
      if (!dropout.is_number() || dropout.get<double>() != 0.0) {
        return f_.Error(JsonFields::Path(where, "dropout"),
                        Concat("BPE dropout (random merges) is not "
                               "supported, found ",
                               dropout.dump()));
      }
    }
    // vocab: {"token": id, ...}
    MOE_ASSIGN_OR_RETURN(const Json* vocab_node, f_.Member(node, "vocab", where));
    const std::string vocab_path = JsonFields::Path(where, "vocab");
    MOE_RETURN_IF_ERROR(f_.ExpectObject(*vocab_node, vocab_path));
    std::vector<std::pair<std::string, int32_t>> vocab;
    vocab.reserve(vocab_node->size());
    for (const auto& [token, id] : vocab_node->items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return f_.Error(JsonFields::Path(vocab_path, Concat("\"", token, "\"")),
                        Concat("expected a non-negative 32-bit id, found ", id.dump()));
      }
      vocab.emplace_back(token, static_cast<int32_t>(id.get<int64_t>()));
    }
    // merges: ["a b", ...] or [["a", "b"], ...]
    std::vector<std::pair<std::string, std::string>> merges;
    if (JsonFields::Has(node, "merges")) {
      const Json& list = node["merges"];
      const std::string path = JsonFields::Path(where, "merges");
      MOE_RETURN_IF_ERROR(f_.ExpectArray(list, path));
      merges.reserve(list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        const Json& merge = list[i];
        if (merge.is_string()) {
          const std::string& line = merge.get_ref<const std::string&>();
          if (line.rfind("#version", 0) == 0) continue;
          const size_t space = line.find(' ');
          if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
            return f_.Error(JsonFields::Index(path, i),
                            Concat("expected \"left right\" with one space, "
                                   "found \"",
                                   line, "\""));
          }
          merges.emplace_back(line.substr(0, space), line.substr(space + 1));
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                   merge[1].is_string()) {
          merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
        } else {
          return f_.Error(JsonFields::Index(path, i),
                          Concat("expected \"left right\" or [\"left\", "
                                 "\"right\"], found ",
                                 merge.dump()));
        }
      }
    }
    BpeOptions options;
    MOE_ASSIGN_OR_RETURN(options.unk_token, f_.OptionalString(node, "unk_token", where));
    MOE_ASSIGN_OR_RETURN(options.fuse_unk, f_.Bool(node, "fuse_unk", false, where));
    MOE_ASSIGN_OR_RETURN(options.byte_fallback, f_.Bool(node, "byte_fallback", false, where));
    MOE_ASSIGN_OR_RETURN(options.ignore_merges, f_.Bool(node, "ignore_merges", false, where));
    MOE_ASSIGN_OR_RETURN(auto prefix, f_.OptionalString(node, "continuing_subword_prefix", where));
    MOE_ASSIGN_OR_RETURN(auto suffix, f_.OptionalString(node, "end_of_word_suffix", where));
    options.continuing_subword_prefix = prefix.value_or("");
    options.end_of_word_suffix = suffix.value_or("");
    auto model = BpeModel::Create(std::move(vocab), merges, std::move(options));
    if (!model.ok()) return f_.Error(where, std::string(model.status().message()));
    return std::move(*model);
  }

  absl::StatusOr<std::vector<AddedToken>> AddedTokens(const Json& node, std::string_view where) {
    MOE_RETURN_IF_ERROR(f_.ExpectArray(node, where));
    std::vector<AddedToken> tokens;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string path = JsonFields::Index(where, i);
      const Json& entry = node[i];
      AddedToken token;
      MOE_ASSIGN_OR_RETURN(int64_t id, f_.Int(entry, "id", path));
      if (id < 0 || id > INT32_MAX) {
        return f_.Error(JsonFields::Path(path, "id"),
                        Concat("expected a non-negative 32-bit id, found ", id));
      }
      token.id = static_cast<int32_t>(id);
      MOE_ASSIGN_OR_RETURN(token.content, f_.String(entry, "content", path));
      MOE_ASSIGN_OR_RETURN(token.single_word, f_.Bool(entry, "single_word", false, path));
      MOE_ASSIGN_OR_RETURN(token.lstrip, f_.Bool(entry, "lstrip", false, path));
      MOE_ASSIGN_OR_RETURN(token.rstrip, f_.Bool(entry, "rstrip", false, path));
      MOE_ASSIGN_OR_RETURN(token.normalized, f_.Bool(entry, "normalized", true, path));
      MOE_ASSIGN_OR_RETURN(token.special, f_.Bool(entry, "special", false, path));
      tokens.push_back(std::move(token));
    }
    return tokens;
  }

  // The id of `token` as the finished tokenizer will see it.
  std::optional<int32_t> LookUp(const std::string& token, const Tokenizer::Parts& parts) {
    for (const AddedToken& added : parts.added_tokens) {
      if (added.content == token) return added.id;
    }
    return parts.model->TokenToId(token);
  }

  // BertProcessing / RobertaProcessing: {"cls": ["<s>", 0], "sep": ["</s>", 2]}.
  absl::StatusOr<int32_t> TokenPairId(const Json& node, std::string_view key,
                                      std::string_view where) {
    MOE_ASSIGN_OR_RETURN(const Json* pair, f_.Member(node, key, where));
    if (!pair->is_array() || pair->size() != 2 || !(*pair)[1].is_number_integer()) {
      return f_.Error(JsonFields::Path(where, key),
                      Concat("expected [\"token\", id], found ", pair->dump()));
    }
    return static_cast<int32_t>((*pair)[1].get<int64_t>());
  }

  absl::StatusOr<std::unique_ptr<moeserve::PostProcessor>> PostProcessor(
      const Json& node, std::string_view where, const Tokenizer::Parts& parts) {
    MOE_ASSIGN_OR_RETURN(std::string type, Type(node, where));
    if (type == "ByteLevel") return NewIdentityPostProcessor();
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      MOE_ASSIGN_OR_RETURN(int32_t cls, TokenPairId(node, "cls", where));
      MOE_ASSIGN_OR_RETURN(int32_t sep, TokenPairId(node, "sep", where));
      return NewTemplatePostProcessor({{TemplatePiece::kSpecial, {cls}},
                                       {TemplatePiece::kSequence, {}},
                                       {TemplatePiece::kSpecial, {sep}}});
    }
    if (type == "Sequence") {
      MOE_ASSIGN_OR_RETURN(auto steps,
                           List<moeserve::PostProcessor>(node, "processors", where,
                                                         [&](const Json& n, const std::string& w) {
                                                           return PostProcessor(n, w, parts);
                                                         }));
      return NewSequencePostProcessor(std::move(steps));
    }
    if (type != "TemplateProcessing") {
      return Unsupported(where, "post_processor", type, kPostProcessorTypes);
    }
    MOE_ASSIGN_OR_RETURN(const Json* single, f_.Member(node, "single", where));
    const std::string single_path = JsonFields::Path(where, "single");
    MOE_RETURN_IF_ERROR(f_.ExpectArray(*single, single_path));
    const Json empty = Json::object();
    const Json& specials = JsonFields::Has(node, "special_tokens") ? node["special_tokens"] : empty;
    std::vector<TemplatePiece> pieces;
    for (size_t i = 0; i < single->size(); ++i) {
      const Json& piece = (*single)[i];
      const std::string path = JsonFields::Index(single_path, i);
      if (JsonFields::Has(piece, "Sequence")) {
        MOE_ASSIGN_OR_RETURN(
            std::string id, f_.String(piece["Sequence"], "id", JsonFields::Path(path, "Sequence")));
        if (id != "A") {
          return f_.Error(JsonFields::Path(path, "Sequence.id"),
                          Concat("the single template can only hold "
                                 "sequence A, found \"",
                                 id, "\""));
        }
        pieces.push_back({TemplatePiece::kSequence, {}});
        continue;
      }
      if (!JsonFields::Has(piece, "SpecialToken")) {
        return f_.Error(path, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
      const std::string special_path = JsonFields::Path(path, "SpecialToken");
      MOE_ASSIGN_OR_RETURN(std::string name, f_.String(piece["SpecialToken"], "id", special_path));
      std::vector<int32_t> ids;
      if (JsonFields::Has(specials, name) && JsonFields::Has(specials[name], "ids")) {
        const Json& list = specials[name]["ids"];
        const std::string ids_path =
            JsonFields::Path(where, Concat("special_tokens.", name, ".ids"));
        MOE_RETURN_IF_ERROR(f_.ExpectArray(list, ids_path));
        for (const Json& id : list) {
          if (!id.is_number_integer()) {
            return f_.Error(ids_path, Concat("expected integer ids, found ", id.dump()));
          }
          ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
        }
      } else if (const auto id = LookUp(name, parts)) {
        ids.push_back(*id);
      } else {
        return f_.Error(
            JsonFields::Path(special_path, "id"),
            Concat("special token \"", name, "\" is neither in special_tokens nor in the vocab"));
      }
      pieces.push_back({TemplatePiece::kSpecial, std::move(ids)});
    }
    return NewTemplatePostProcessor(std::move(pieces));
  }

  absl::StatusOr<std::unique_ptr<moeserve::Decoder>> Decoder(const Json& node,
                                                             std::string_view where) {
    MOE_ASSIGN_OR_RETURN(std::string type, Type(node, where));
    if (type == "ByteLevel") return NewByteLevelDecoder();
    if (type == "ByteFallback") return NewByteFallbackDecoder();
    if (type == "Fuse") return NewFuseDecoder();
    if (type == "Metaspace") {
      MOE_ASSIGN_OR_RETURN(std::string replacement, OneChar(node, "replacement", where));
      MOE_ASSIGN_OR_RETURN(PrependScheme scheme, Scheme(node, where));
      return NewMetaspaceDecoder(std::move(replacement), scheme);
    }
    if (type == "Replace") {
      MOE_ASSIGN_OR_RETURN(Pattern pattern, ParsePattern(node, where));
      MOE_ASSIGN_OR_RETURN(std::string content, f_.String(node, "content", where));
      return NewReplaceDecoder(std::move(pattern), std::move(content));
    }
    if (type == "Strip") {
      MOE_ASSIGN_OR_RETURN(std::string content, OneChar(node, "content", where));
      MOE_ASSIGN_OR_RETURN(int64_t start, f_.Int(node, "start", where));
      MOE_ASSIGN_OR_RETURN(int64_t stop, f_.Int(node, "stop", where));
      if (start < 0 || stop < 0) {
        return f_.Error(where, "start and stop must not be negative");
      }
      size_t pos = 0;
      return NewStripDecoder(DecodeValidUtf8(content, &pos), static_cast<size_t>(start),
                             static_cast<size_t>(stop));
    }
    if (type == "Sequence") {
      MOE_ASSIGN_OR_RETURN(auto steps,
                           List<moeserve::Decoder>(
                               node, "decoders", where,
                               [&](const Json& n, const std::string& w) { return Decoder(n, w); }));
      return NewSequenceDecoder(std::move(steps));
    }
    return Unsupported(where, "decoder", type, kDecoderTypes);
  }

  JsonFields f_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text,
                                                               std::string_view source_name) {
  Loader loader(source_name);
  MOE_ASSIGN_OR_RETURN(Parts parts, loader.Load(json_text));
  return std::make_unique<Tokenizer>(std::move(parts));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Concat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(Concat(path, ": read failed"));
  return FromJson(text.str(), path);
}

}  // namespace moeserve
