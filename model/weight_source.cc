#include "model/weight_source.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// One or more memory-mapped safetensors files and a name -> file map.
class SafetensorsSource : public WeightSource {
 public:
  SafetensorsSource(std::string description,
                    std::vector<std::unique_ptr<SafetensorsFile>> files)
      : description_(std::move(description)), files_(std::move(files)) {}

  // Records that `name` lives in files_[file_index]; fails when absent there.
  absl::Status Map(const std::string& name, size_t file_index) {
    const SafetensorsFile& file = *files_[file_index];
    if (file.Find(name) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(description_, ": tensor '", name, "' is listed under '", file.path(),
                       "' but that file does not contain it"));
    }
    where_[name] = file_index;
    return absl::OkStatus();
  }

  absl::StatusOr<TensorView> Get(absl::string_view name) const override {
    auto it = where_.find(name);
    if (it == where_.end()) {
      return absl::NotFoundError(
          absl::StrCat("tensor '", name, "' not found in ", description_));
    }
    const SafetensorsFile& file = *files_[it->second];
    return file.View(*file.Find(name));
  }

  bool Contains(absl::string_view name) const override { return where_.count(name) > 0; }

  std::string Location(absl::string_view name) const override {
    auto it = where_.find(name);
    return it == where_.end() ? description_ : files_[it->second]->path();
  }

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [name, index] : where_) names.push_back(name);
    return names;
  }

 private:
  std::string description_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> where_;
};

absl::StatusOr<std::unique_ptr<WeightSource>> OpenIndex(const std::string& dir,
                                                        const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::NotFoundError(absl::StrCat(index_path, ": cannot read"));
  auto root = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  }
  auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing object 'weight_map'"));
  }
  std::map<std::string, size_t> shard_index;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::vector<std::pair<std::string, size_t>> mapping;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry for '", it.key(), "' is not a string"));
    }
    const std::string shard = it.value().get<std::string>();
    // Shards are plain file names beside the index; refuse paths that escape.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." ||
        shard == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": weight_map names shard '", shard, "' for tensor '", it.key(),
          "', which is not a file name in the checkpoint directory"));
    }
    auto [pos, inserted] = shard_index.emplace(shard, files.size());
    if (inserted) {
      auto file = SafetensorsFile::Open(dir + "/" + shard);
      if (!file.ok()) {
        return absl::Status(file.status().code(),
                            absl::StrCat(file.status().message(), " (shard named by ",
                                         index_path, ")"));
      }
      files.push_back(std::move(*file));
    }
    mapping.emplace_back(it.key(), pos->second);
  }
  auto source = std::make_unique<SafetensorsSource>(index_path, std::move(files));
  for (const auto& [name, file_index] : mapping) {
    MOE_RETURN_IF_ERROR(source->Map(name, file_index));
  }
  return std::unique_ptr<WeightSource>(std::move(source));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsFile(const std::string& path) {
  MOE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  std::vector<std::string> names;
  for (const auto& e : file->header().entries) names.push_back(e.name);
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.push_back(std::move(file));
  auto source = std::make_unique<SafetensorsSource>(path, std::move(files));
  for (const auto& name : names) MOE_RETURN_IF_ERROR(source->Map(name, 0));
  return std::unique_ptr<WeightSource>(std::move(source));
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensorsDir(const std::string& dir) {
  const std::string index = dir + "/model.safetensors.index.json";
  if (FileExists(index)) return OpenIndex(dir, index);
  const std::string single = dir + "/model.safetensors";
  if (FileExists(single)) return OpenSafetensorsFile(single);
  return absl::NotFoundError(absl::StrCat(
      dir, ": no model.safetensors or model.safetensors.index.json (only safetensors "
           "checkpoints are supported)"));
}

void InMemoryWeightSource::Add(const std::string& name, DType dtype,
                               std::vector<int64_t> shape, std::string bytes) {
  tensors_[name] = Stored{dtype, std::move(shape), std::move(bytes)};
}

void InMemoryWeightSource::AddFloat(const std::string& name, DType dtype,
                                    std::vector<int64_t> shape,
                                    const std::vector<float>& values) {
  std::string bytes(values.size() * DTypeSize(dtype), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else {
      uint16_t h = dtype == DType::kBF16 ? FloatToBF16(values[i]) : FloatToF16(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
  }
  Add(name, dtype, std::move(shape), std::move(bytes));
}

absl::StatusOr<TensorView> InMemoryWeightSource::Get(absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in memory source"));
  }
  TensorView view;
  view.dtype = it->second.dtype;
  view.shape = it->second.shape;
  view.data = it->second.bytes.data();
  return view;
}

bool InMemoryWeightSource::Contains(absl::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

std::string InMemoryWeightSource::Location(absl::string_view) const { return "memory"; }

std::vector<std::string> InMemoryWeightSource::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, stored] : tensors_) names.push_back(name);
  return names;
}

}  // namespace moeserve
