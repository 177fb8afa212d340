#include "model/safetensors.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/weight_source.h"

namespace moeserve {
namespace {

using ::testing::HasSubstr;

std::string F32Bytes(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// A file image with a hand-written header, so malformed headers can be built.
std::string Image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

absl::Status ParseImage(const std::string& header, const std::string& data) {
  return ParseSafetensorsBuffer(Image(header, data), "x.safetensors").status();
}

TEST(SafetensorsTest, RoundTripsSerializedTensors) {
  std::string image = SerializeSafetensors(
      {{"b", DType::kF32, {2, 2}, F32Bytes({1, 2, 3, 4})},
       {"a", DType::kBF16, {3}, std::string(6, '\x01')}},
      {{"format", "pt"}});
  uint64_t data_start = 0;
  auto header = ParseSafetensorsBuffer(image, "t.safetensors", &data_start);
  ASSERT_TRUE(header.ok()) << header.status();
  ASSERT_EQ(header->entries.size(), 2u);
  EXPECT_EQ(header->metadata.at("format"), "pt");
  EXPECT_EQ(data_start % 8, 0u);
  const SafetensorsEntry& a = header->entries[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::kBF16);
  EXPECT_EQ(a.begin, 16u);
  EXPECT_EQ(a.end, 22u);
}

struct BadHeader {
  const char* what;
  std::string header;
  std::string data;
  const char* expected;  // substring of the error
};

TEST(SafetensorsTest, RejectsMalformedHeadersWithNamedErrors) {
  const std::string d16(16, '\0');
  const BadHeader cases[] = {
      {"not json", "{\"a\": ", d16, "not valid JSON"},
      {"not object", "[1,2]", d16, "not a JSON object"},
      {"unknown dtype", R"({"w":{"dtype":"F31","shape":[4],"data_offsets":[0,16]}})", d16,
       "tensor 'w': unknown dtype 'F31'"},
      {"negative shape", R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", d16,
       "tensor 'w': shape has an entry"},
      {"wrong size", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", d16,
       "tensor 'w': holds 16 bytes but shape [3] of F32 needs 12"},
      {"out of range", R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", d16,
       "tensor 'w': data_offsets [0, 32] exceed the data section (16 bytes"},
      {"reversed", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d16,
       "are reversed"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       d16, "tensor 'b': data_offsets [8, 16] overlap tensor 'a'"},
      {"gap",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
       d16, "tensor 'b': data_offsets [8, 16] leave a gap after byte 4"},
      {"trailing", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d16,
       "tensors cover 8 bytes but the data section has 16"},
      {"overflow", R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,16]}})",
       d16, "byte size overflows"},
      {"offsets not pair", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0]}})", d16,
       "'data_offsets' must be two"},
      {"metadata not strings", R"({"__metadata__":{"k":1}})", "", "is not a string"},
  };
  for (const auto& c : cases) {
    absl::Status s = ParseImage(c.header, c.data);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expected)) << c.what;
    EXPECT_THAT(std::string(s.message()), HasSubstr("x.safetensors")) << c.what;
  }
}

TEST(SafetensorsTest, RejectsTruncatedFiles) {
  EXPECT_THAT(std::string(ParseSafetensorsBuffer("abc", "t").status().message()),
              HasSubstr("too short"));
  std::string image = SerializeSafetensors({{"w", DType::kF32, {4}, F32Bytes({1, 2, 3, 4})}});
  // Cut inside the header, then inside the data.
  auto cut_header = ParseSafetensorsBuffer(image.substr(0, 20), "t.safetensors");
  EXPECT_THAT(std::string(cut_header.status().message()), HasSubstr("runs past the end"));
  auto cut_data = ParseSafetensorsBuffer(image.substr(0, image.size() - 3), "t.safetensors");
  EXPECT_THAT(std::string(cut_data.status().message()),
              HasSubstr("tensor 'w': data_offsets [0, 16] exceed the data section (13 bytes"));
}

class TempDir {
 public:
  TempDir() {
    std::string templ = ::testing::TempDir() + "/st_XXXXXX";
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path_ + "/" + name, std::ios::binary) << bytes;
  }

 private:
  std::string path_;
};

TEST(SafetensorsTest, MemoryMapsFilesAndShardedIndexes) {
  TempDir dir;
  dir.Write("model-00001-of-00002.safetensors",
            SerializeSafetensors({{"a", DType::kF32, {2}, F32Bytes({1.5f, -2})}}));
  dir.Write("model-00002-of-00002.safetensors",
            SerializeSafetensors({{"b", DType::kF32, {1}, F32Bytes({7})}}));
  dir.Write("model.safetensors.index.json",
            R"({"metadata":{"total_size":12},"weight_map":{)"
            R"("a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  auto source = OpenSafetensorsDir(dir.path());
  ASSERT_TRUE(source.ok()) << source.status();
  auto a = (*source)->Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(static_cast<const float*>(a->data)[0], 1.5f);
  EXPECT_EQ(static_cast<const float*>(a->data)[1], -2.0f);
  EXPECT_THAT((*source)->Location("b"), HasSubstr("model-00002-of-00002.safetensors"));
  auto missing = (*source)->Get("c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("tensor 'c' not found in " + dir.path() + "/model.safetensors.index.json"));
}

TEST(SafetensorsTest, IndexErrorsNameTheShardAndTensor) {
  TempDir dir;
  dir.Write("s1.safetensors", SerializeSafetensors({{"a", DType::kF32, {1}, F32Bytes({1})}}));
  dir.Write("model.safetensors.index.json", R"({"weight_map":{"zz":"s1.safetensors"}})");
  auto listed_missing = OpenSafetensorsDir(dir.path());
  EXPECT_THAT(std::string(listed_missing.status().message()),
              HasSubstr("tensor 'zz' is listed under '" + dir.path() + "/s1.safetensors'"));

  dir.Write("model.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  EXPECT_THAT(std::string(OpenSafetensorsDir(dir.path()).status().message()),
              HasSubstr("not a file name in the checkpoint directory"));

  dir.Write("model.safetensors.index.json", R"({"weight_map":{"a":"absent.safetensors"}})");
  auto absent = OpenSafetensorsDir(dir.path());
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(absent.status().message()), HasSubstr("absent.safetensors"));

  TempDir empty;
  EXPECT_THAT(std::string(OpenSafetensorsDir(empty.path()).status().message()),
              HasSubstr("no model.safetensors"));
}

}  // namespace
}  // namespace moeserve
