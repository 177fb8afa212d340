// The engine against the float64 reference (tests/reference/reference.py) on
// every fixture in tests/fixtures: logits at every prompt position, logits at
// every decode step (teacher-forced along the golden tokens), and the greedy
// continuation, token for token.
//
// Tolerance: max |ours - golden| <= 1e-4 * max |golden| per row, for F32,
// BF16 and F16 checkpoints alike. The goldens of the BF16/F16 fixtures were
// computed from the stored 16-bit values (upcast exactly), so in every case
// the only difference is the engine's float32 arithmetic: ~1e-7 relative per
// operation, growing to ~1e-6 through a few layers — 1e-4 leaves a wide margin
// and still fails on any semantic mistake (those move logits by units; see
// check_reference.py's mutation test). Separately, BF16Rounding below bounds
// what BF16 storage itself costs against the F32 original.
#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/generator.h"
#include "engine/transformer.h"
#include "gtest/gtest.h"
#include "kernels/cpu/gemv.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace moeserve {
namespace {

constexpr double kRelTolerance = 1e-4;

std::string FixtureDir(const std::string& name) { return "tests/fixtures/" + name; }

struct Golden {
  std::unique_ptr<SafetensorsFile> file;
  std::vector<int32_t> prompt, greedy;
  const float* prompt_logits = nullptr;
  const float* decode_logits = nullptr;
};

Golden LoadGolden(const std::string& name) {
  Golden g;
  auto file = SafetensorsFile::Open(FixtureDir(name) + "/golden.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  g.file = std::move(*file);
  auto ints = [&](const char* t) {
    TensorView v = g.file->View(*g.file->Find(t));
    const int32_t* p = static_cast<const int32_t*>(v.data);
    return std::vector<int32_t>(p, p + v.numel());
  };
  g.prompt = ints("prompt_ids");
  g.greedy = ints("greedy_ids");
  g.prompt_logits = static_cast<const float*>(g.file->View(*g.file->Find("prompt_logits")).data);
  g.decode_logits = static_cast<const float*>(g.file->View(*g.file->Find("decode_logits")).data);
  return g;
}

// max |a - b| / max |b| over one row.
double RelError(const float* a, const float* b, int n) {
  double diff = 0, scale = 0;
  for (int i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto w = LoadModel(FixtureDir(GetParam()));
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    model_ = std::make_unique<Transformer>(*weights_);
    golden_ = LoadGolden(GetParam());
    vocab_ = weights_->config.vocab_size;
  }

  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<Transformer> model_;
  Golden golden_;
  int vocab_ = 0;
};

TEST_P(GoldenTest, PromptLogitsAtEveryPosition) {
  KvCache cache = model_->NewCache(static_cast<int>(golden_.prompt.size()));
  std::vector<float> logits;
  SequenceChunk chunk{golden_.prompt, 0, &cache, /*all_logits=*/true};
  ASSERT_TRUE(model_->Forward({&chunk, 1}, &logits).ok());
  ASSERT_EQ(logits.size(), golden_.prompt.size() * vocab_);
  double worst = 0;
  for (size_t i = 0; i < golden_.prompt.size(); ++i) {
    const double err = RelError(&logits[i * vocab_], golden_.prompt_logits + i * vocab_, vocab_);
    worst = std::max(worst, err);
    EXPECT_LE(err, kRelTolerance) << "prompt position " << i;
  }
  RecordProperty("worst_prompt_rel_error", absl::StrCat(worst));
  std::cout << GetParam() << ": worst prompt-logit relative error " << worst << "\n";
}

TEST_P(GoldenTest, DecodeLogitsAtEveryStep) {
  const int p = static_cast<int>(golden_.prompt.size());
  const int n = static_cast<int>(golden_.greedy.size());
  KvCache cache = model_->NewCache(p + n);
  std::vector<float> logits;
  SequenceChunk prefill{golden_.prompt, 0, &cache, false};
  ASSERT_TRUE(model_->Forward({&prefill, 1}, &logits).ok());
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const double err = RelError(logits.data(), golden_.decode_logits + i * vocab_, vocab_);
    worst = std::max(worst, err);
    EXPECT_LE(err, kRelTolerance) << "decode step " << i;
    SequenceChunk step{absl::MakeConstSpan(&golden_.greedy[i], 1), p + i, &cache, false};
    logits.clear();
    ASSERT_TRUE(model_->Forward({&step, 1}, &logits).ok());
  }
  std::cout << GetParam() << ": worst decode-logit relative error " << worst << "\n";
}

TEST_P(GoldenTest, GreedyContinuationIsIdentical) {
  GenerateOptions options;
  options.max_tokens = static_cast<int>(golden_.greedy.size());
  options.ignore_eos = true;  // the reference does not stop at EOS
  auto result = Generate(*model_, golden_.prompt, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_GE(golden_.greedy.size(), 32u);
  EXPECT_EQ(result->tokens, golden_.greedy);
  EXPECT_EQ(result->finish_reason, FinishReason::kLength);
}

TEST_P(GoldenTest, ChunkedPrefillAndBatchingDoNotChangeLogits) {
  // The prompt in chunks of 5, and alongside a second sequence (a prefix of
  // the prompt) in the same Forward calls.
  const int p = static_cast<int>(golden_.prompt.size());
  const int q = std::max(1, p / 2);
  KvCache a = model_->NewCache(p), b = model_->NewCache(q);
  std::vector<float> logits;
  absl::Span<const int32_t> prompt(golden_.prompt);
  for (int begin = 0; begin < p; begin += 5) {
    const int len = std::min(5, p - begin);
    std::vector<SequenceChunk> batch = {{prompt.subspan(begin, len), begin, &a, true}};
    if (begin == 0) batch.push_back({prompt.subspan(0, q), 0, &b, true});
    logits.clear();
    ASSERT_TRUE(model_->Forward(batch, &logits).ok());
    for (int i = 0; i < len; ++i) {
      EXPECT_LE(RelError(&logits[i * vocab_], golden_.prompt_logits + (begin + i) * vocab_, vocab_),
                kRelTolerance)
          << "chunked position " << begin + i;
    }
    if (begin == 0) {
      for (int i = 0; i < q; ++i) {
        EXPECT_LE(RelError(&logits[(len + i) * vocab_], golden_.prompt_logits + i * vocab_, vocab_),
                  kRelTolerance)
            << "batched second sequence position " << i;
      }
    }
  }
}

// Which GEMV path ran (MOESERVE_ISA selects one; see golden_test_* targets).
TEST(GoldenIsaTest, ReportsThePathUnderTest) {
  const char* want = std::getenv("MOESERVE_ISA");
  const char* got = kernels::cpu::IsaName(kernels::cpu::DetectIsa());
  std::cout << "GEMV path: " << got << "\n";
  if (want != nullptr && std::string(want) == "generic") {
    EXPECT_STREQ(got, "generic");
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Values("mixtral_f32", "mixtral_bf16", "qwen2_moe_f32",
                                           "qwen3_moe_f32", "qwen3_moe_bf16_merged_sharded",
                                           "qwen3_moe_tied_f16", "olmoe_f32", "olmoe_bf16",
                                           "qwen3_moe_chat"));

// BF16 storage against the F32 original: mixtral_bf16 and olmoe_bf16 hold
// mixtral_f32's and olmoe_f32's weights rounded to BF16 (8-bit mantissa,
// relative rounding error <= 2^-9 ~ 0.2% per weight). Through a few layers
// those errors add up roughly like a random walk; logits move by a few tenths
// of a percent of their range (measured: ~0.9% for Mixtral, ~0.7% for
// OLMoE). We bound it at 2% of max |logit|.
TEST(BF16Rounding, StaysCloseToTheFloat32Model) {
  for (const auto& [bf16, f32] : {std::pair{"mixtral_bf16", "mixtral_f32"},
                                  std::pair{"olmoe_bf16", "olmoe_f32"}}) {
    auto w = LoadModel(FixtureDir(bf16));
    ASSERT_TRUE(w.ok()) << w.status();
    Transformer model(**w);
    Golden golden = LoadGolden(f32);
    const int vocab = (*w)->config.vocab_size;
    KvCache cache = model.NewCache(static_cast<int>(golden.prompt.size()));
    std::vector<float> logits;
    SequenceChunk chunk{golden.prompt, 0, &cache, true};
    ASSERT_TRUE(model.Forward({&chunk, 1}, &logits).ok());
    double worst = 0;
    for (size_t i = 0; i < golden.prompt.size(); ++i) {
      worst = std::max(worst, RelError(&logits[i * vocab], golden.prompt_logits + i * vocab, vocab));
    }
    std::cout << bf16 << " vs " << f32 << " golden: worst relative error " << worst << "\n";
    EXPECT_LE(worst, 2e-2) << bf16;
    EXPECT_GT(worst, 1e-6) << bf16 << " is not actually rounded";
  }
}

}  // namespace
}  // namespace moeserve
