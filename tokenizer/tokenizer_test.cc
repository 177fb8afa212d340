#include "tokenizer/tokenizer.h"

#include <atomic>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

using Ids = std::vector<int32_t>;

// A Llama-2-shaped tokenizer (Prepend/Replace normalizer, byte fallback,
// fused unknowns, <s> template, ByteFallback/Fuse/Strip decoder) in
// miniature. Expected values below are what HF's tokenizers gives for it.
constexpr char kLlamaTiny[] = R"json({
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 16, "content": "[MASK]", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true}],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "▁"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA4>": 4, "▁": 5, "h": 6, "i": 7,
              "▁h": 8, "▁hi": 9, "a": 10, "<0xE4>": 11, "<0xB8>": 12, "<0xAD>": 13, "<0x20>": 14, "x": 15},
    "merges": ["▁ h", "▁h i"]}
})json";

// A GPT-2-shaped byte-level tokenizer: the 256-character alphabet (ids are
// the byte values), merges Ġh, Ġhi, hi, ä¸ (ids 256..259), and two added
// tokens.
std::string GptTinyJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[std::string(ByteLevelChar(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\u0120", "h"}, {"\u0120h", "i"}, {"h", "i"}, {"\u00e4", "\u00b8"}};
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = static_cast<int>(vocab.size());
    merge_list.push_back({a, b});
  }
  const auto byte_level = nlohmann::json{{"type", "ByteLevel"},
                                         {"add_prefix_space", false},
                                         {"trim_offsets", true},
                                         {"use_regex", true}};
  return nlohmann::json{
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 300}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}},
        {{"id", 301}, {"content", "<think>"}, {"special", false}, {"normalized", false}}}},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", byte_level},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"vocab", vocab},
        {"merges", merge_list}}}}
      .dump();
}

std::unique_ptr<Tokenizer> Load(std::string_view json) {
  auto tokenizer = Tokenizer::FromJson(json, "test.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return std::move(*tokenizer);
}

TEST(TokenizerTest, LlamaShapedEncode) {
  const auto tok = Load(kLlamaTiny);
  EXPECT_EQ(tok->Encode("hi \u00e4", true), (Ids{1, 9, 5, 3, 4}));
  EXPECT_EQ(tok->Encode("hi \u00e4", false), (Ids{9, 5, 3, 4}));
  EXPECT_EQ(tok->Encode(" [MASK]  hi", true), (Ids{1, 16, 9}));             // lstrip + rstrip
  EXPECT_EQ(tok->Encode("\u4e2dhi", true), (Ids{1, 5, 11, 12, 13, 6, 7}));  // byte fallback
  EXPECT_EQ(tok->Encode("hi hi</s>\u4e2d<s>", true), (Ids{1, 9, 9, 2, 5, 11, 12, 13, 1}));
  EXPECT_EQ(tok->Encode("xax hi", true), (Ids{1, 5, 15, 10, 15, 9}));
  EXPECT_EQ(tok->Encode("h\xffi", true), (Ids{1, 8, 0, 7}));  // U+FFFD has no bytes: <unk>
  EXPECT_EQ(tok->Encode("hi[MASK]x", true), (Ids{1, 9, 16, 5, 15}));
  EXPECT_EQ(tok->Encode("", true), (Ids{1}));
  EXPECT_EQ(tok->Encode("", false), (Ids{}));
}

TEST(TokenizerTest, LlamaShapedDecode) {
  const auto tok = Load(kLlamaTiny);
  EXPECT_EQ(tok->Decode({1, 9, 5, 3, 4}, false), "<s> hi \u00e4");
  EXPECT_EQ(tok->Decode({1, 9, 5, 3, 4}, true), "hi \u00e4");
  EXPECT_EQ(tok->Decode({1, 9, 9, 2, 5, 11, 12, 13, 1}, false), "<s> hi hi</s> \u4e2d<s>");
  EXPECT_EQ(tok->Decode({1, 9, 9, 2, 5, 11, 12, 13, 1}, true), "hi hi \u4e2d");
  EXPECT_EQ(tok->Decode({1, 9, 16, 5, 15}, false), "<s> hi[MASK] x");
  EXPECT_EQ(tok->Decode({11, 12}, false), "\ufffd\ufffd");  // incomplete run: one per byte
}

TEST(TokenizerTest, ByteLevelEncodeDecode) {
  const auto tok = Load(GptTinyJson());
  EXPECT_EQ(tok->Encode("hi \u00e4", true), (Ids{258, 32, 195, 164}));
  EXPECT_EQ(tok->Encode(" [MASK]  hi", true), (Ids{32, 91, 77, 65, 83, 75, 93, 32, 257}));
  EXPECT_EQ(tok->Encode("\u4e2dhi", true), (Ids{259, 173, 258}));
  EXPECT_EQ(tok->Encode("hi hi<|endoftext|>\u4e2d<think>", true),
            (Ids{258, 257, 300, 259, 173, 301}));
  EXPECT_EQ(tok->Encode("cafe\u0301 hi", true), (Ids{99, 97, 102, 195, 169, 257}));  // NFC
  EXPECT_EQ(tok->Encode("h\xffi", true), (Ids{104, 239, 191, 189, 105}));
  EXPECT_EQ(tok->Decode({258, 257, 300, 259, 173, 301}, false), "hi hi<|endoftext|>\u4e2d<think>");
  // Only special tokens are skipped.
  EXPECT_EQ(tok->Decode({258, 257, 300, 259, 173, 301}, true), "hi hi\u4e2d<think>");
  EXPECT_EQ(tok->Decode({259}, false), "\ufffd");  // "\xe4\xb8" alone
}

TEST(TokenizerTest, Accessors) {
  const auto tok = Load(kLlamaTiny);
  EXPECT_EQ(tok->VocabSize(), 17);
  EXPECT_EQ(*tok->TokenToId("\u2581hi"), 9);
  EXPECT_EQ(*tok->TokenToId("[MASK]"), 16);
  EXPECT_FALSE(tok->TokenToId("nope").has_value());
  EXPECT_EQ(*tok->IdToToken(9), "\u2581hi");
  EXPECT_EQ(*tok->IdToToken(16), "[MASK]");
  EXPECT_FALSE(tok->IdToToken(17).has_value());
  EXPECT_FALSE(tok->IdToToken(-3).has_value());
  EXPECT_TRUE(tok->IsSpecialToken(1));
  EXPECT_FALSE(tok->IsSpecialToken(9));
  EXPECT_EQ(tok->SpecialTokenIds(), (Ids{0, 1, 2, 16}));
  EXPECT_TRUE(tok->IsByteFallbackToken(11));
  EXPECT_FALSE(tok->IsByteFallbackToken(9));
  EXPECT_FALSE(Load(GptTinyJson())->IsByteFallbackToken(65));
}

TEST(TokenizerTest, OutOfRangeIdsAreSkipped) {
  const auto tok = Load(kLlamaTiny);
  EXPECT_EQ(tok->Decode({-1, 9, 1000000, 5, 17, 3, 4, INT32_MIN, INT32_MAX}, false),
            tok->Decode({9, 5, 3, 4}, false));
}

// Arbitrary bytes and ids never crash, and always give valid UTF-8.
TEST(TokenizerTest, RobustToArbitraryInput) {
  const auto llama = Load(kLlamaTiny);
  const auto gpt = Load(GptTinyJson());
  std::mt19937 rng(1234);
  const char* fragments[] = {"<s>",      "</s>",   "[MASK]", "<|endoftext|>", "<think>",
                             "\u2581",   " ",      "\u00e4", "\u4e2d",        "hi",
                             "\xf0\x9f", "\xe4",   "\xff",   "\x80",          "\0",
                             "\r\n",     "\u180e", "\ufeff"};
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::string text;
    const int pieces = rng() % 12;
    for (int k = 0; k < pieces; ++k) {
      if (rng() % 3 == 0) {
        text.push_back(static_cast<char>(rng() % 256));
      } else {
        const char* f = fragments[rng() % (sizeof(fragments) / sizeof(fragments[0]))];
        text.append(f, f[0] == '\0' ? 1 : std::strlen(f));
      }
    }
    for (const Tokenizer* tok : {llama.get(), gpt.get()}) {
      const Ids ids = tok->Encode(text, iteration % 2 == 0);
      for (int32_t id : ids) ASSERT_TRUE(tok->IdToToken(id).has_value()) << id;
      ASSERT_TRUE(IsValidUtf8(tok->Decode(ids, iteration % 3 == 0)));
      Ids random_ids;
      for (int k = 0; k < 10; ++k) random_ids.push_back(static_cast<int32_t>(rng() % 400) - 50);
      ASSERT_TRUE(IsValidUtf8(tok->Decode(random_ids, false)));
    }
  }
}

// Encode and Decode may run on many threads at once (the BPE word cache is
// shared).
TEST(TokenizerTest, ConcurrentEncodeAgrees) {
  const auto tok = Load(GptTinyJson());
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("hi " + std::to_string(i * 7919) + " \u4e2d hi");
  std::vector<Ids> expected;
  for (const std::string& text : texts) expected.push_back(tok->Encode(text, true));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (tok->Encode(texts[i], true) != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// Hand-edits a field of kLlamaTiny and returns the load error message.
std::string LoadError(const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json doc = nlohmann::json::parse(kLlamaTiny);
  edit(doc);
  auto tokenizer = Tokenizer::FromJson(doc.dump(), "/models/x/tokenizer.json");
  EXPECT_FALSE(tokenizer.ok());
  if (tokenizer.ok()) return "";
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(tokenizer.status().message());
}

void ExpectContains(const std::string& message, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "\"" << part << "\" not in: " << message;
  }
}

TEST(TokenizerTest, MalformedFilesNameTheFileAndField) {
  ExpectContains(
      LoadError([](auto& d) { d["normalizer"]["normalizers"][1]["type"] = "BertNormalizer"; }),
      {"/models/x/tokenizer.json", "normalizer.normalizers[1].type", "\"BertNormalizer\"", "NFC"});
  ExpectContains(LoadError([](auto& d) {
                   d["pre_tokenizer"] = {{"type", "Whitespace"}};
                 }),
                 {"pre_tokenizer.type", "\"Whitespace\"", "Metaspace"});
  ExpectContains(LoadError([](auto& d) {
                   d["decoder"]["decoders"][0] = {{"type", "WordPiece"}};
                 }),
                 {"decoder.decoders[0].type", "\"WordPiece\""});
  ExpectContains(LoadError([](auto& d) { d["post_processor"]["type"] = "Nope"; }),
                 {"post_processor.type", "\"Nope\""});
  ExpectContains(LoadError([](auto& d) { d["model"]["type"] = "Unigram"; }),
                 {"model.type", "\"Unigram\"", "BPE"});
  ExpectContains(LoadError([](auto& d) { d.erase("model"); }), {"model: missing"});
  ExpectContains(LoadError([](auto& d) { d["model"]["merges"][1] = "\u2581h i extra"; }),
                 {"model.merges[1]", "one space"});
  ExpectContains(LoadError([](auto& d) { d["model"]["merges"][0] = 7; }), {"model.merges[0]"});
  ExpectContains(LoadError([](auto& d) { d["model"]["merges"].push_back("q r"); }),
                 {"model: merges[2]", "\"q\" is not in the vocab"});
  ExpectContains(LoadError([](auto& d) { d["model"]["vocab"]["x"] = "fifteen"; }),
                 {"model.vocab.\"x\"", "non-negative"});
  ExpectContains(LoadError([](auto& d) { d["model"]["dropout"] = 0.1; }), {"model.dropout"});
  ExpectContains(LoadError([](auto& d) { d["model"]["byte_fallback"] = "yes"; }),
                 {"model.byte_fallback", "true or false"});
  ExpectContains(LoadError([](auto& d) {
                   d["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", "(oops"}};
                 }),
                 {"normalizer.normalizers[1].pattern.Regex", "(oops"});
  ExpectContains(LoadError([](auto& d) {
                   d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
                 }),
                 {"pre_tokenizer.replacement", "one character"});
  ExpectContains(LoadError([](auto& d) { d["added_tokens"][1].erase("id"); }),
                 {"added_tokens[1].id: missing"});
  ExpectContains(
      LoadError([](auto& d) { d["post_processor"]["single"][0]["SpecialToken"]["id"] = "<nope>"; }),
      {"post_processor.single[0].SpecialToken.id", "<nope>"});
  ExpectContains(LoadError([](auto& d) { d = nlohmann::json::array(); }),
                 {"(top level)", "expected an object"});
  auto not_json = Tokenizer::FromJson("{\"model\": ", "broken.json");
  ASSERT_FALSE(not_json.ok());
  ExpectContains(std::string(not_json.status().message()), {"broken.json", "not valid JSON"});
}

TEST(TokenizerTest, FromFileMissing) {
  auto tokenizer = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  ExpectContains(std::string(tokenizer.status().message()), {"/nonexistent/tokenizer.json"});
}

TEST(TokenizerTest, LegacyMetaspaceAndNoTemplate) {
  // Older files: Metaspace with add_prefix_space instead of prepend_scheme.
  nlohmann::json doc = nlohmann::json::parse(kLlamaTiny);
  doc.erase("normalizer");
  doc["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}};
  doc["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}};
  doc.erase("post_processor");
  const auto tok = Load(doc.dump());
  EXPECT_EQ(tok->Encode("hi hi", true), (Ids{9, 9}));
  EXPECT_EQ(tok->Decode({9, 9}, false), "hi hi");
}

}  // namespace
}  // namespace moeserve
