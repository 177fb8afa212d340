#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace moeserve {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view file, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", what));
}

absl::Status InvalidTensor(absl::string_view file, absl::string_view tensor,
                           absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": tensor '", tensor, "': ", what));
}

bool ReadUint64(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& name, const Json& j,
                                            uint64_t data_size, absl::string_view file) {
  if (!j.is_object()) return InvalidTensor(file, name, "header entry is not an object");
  SafetensorsEntry e;
  e.name = name;
  auto dtype_it = j.find("dtype");
  if (dtype_it == j.end() || !dtype_it->is_string()) {
    return InvalidTensor(file, name, "missing string field 'dtype'");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  auto dtype = ParseDType(dtype_name);
  if (!dtype) return InvalidTensor(file, name, absl::StrCat("unknown dtype '", dtype_name, "'"));
  e.dtype = *dtype;

  auto shape_it = j.find("shape");
  if (shape_it == j.end() || !shape_it->is_array()) {
    return InvalidTensor(file, name, "missing array field 'shape'");
  }
  // numel * element size must not overflow: track it in 128 bits' worth of care.
  uint64_t nbytes = DTypeSize(e.dtype);
  for (const Json& d : *shape_it) {
    uint64_t v;
    if (!ReadUint64(d, &v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidTensor(file, name, "shape has an entry that is not a non-negative integer");
    }
    e.shape.push_back(static_cast<int64_t>(v));
    if (v != 0 && nbytes > std::numeric_limits<uint64_t>::max() / v) {
      return InvalidTensor(file, name, "shape is too large (byte size overflows)");
    }
    nbytes *= v;
  }

  auto off_it = j.find("data_offsets");
  if (off_it == j.end() || !off_it->is_array() || off_it->size() != 2 ||
      !ReadUint64((*off_it)[0], &e.begin) || !ReadUint64((*off_it)[1], &e.end)) {
    return InvalidTensor(file, name, "'data_offsets' must be two non-negative integers");
  }
  if (e.begin > e.end) {
    return InvalidTensor(file, name, absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                                                  "] are reversed"));
  }
  if (e.end > data_size) {
    return InvalidTensor(file, name,
                         absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                                      "] exceed the data section (", data_size,
                                      " bytes; is the file truncated?)"));
  }
  if (e.end - e.begin != nbytes) {
    return InvalidTensor(file, name,
                         absl::StrCat("holds ", e.end - e.begin, " bytes but shape ",
                                      ShapeString(e.shape), " of ", DTypeName(e.dtype),
                                      " needs ", nbytes));
  }
  return e;
}

}  // namespace

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(absl::string_view header_json,
                                                         uint64_t data_size,
                                                         absl::string_view file) {
  Json root = Json::parse(header_json.begin(), header_json.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid(file, "header is not valid JSON");
  if (!root.is_object()) return Invalid(file, "header is not a JSON object");

  SafetensorsHeader header;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return Invalid(file, "'__metadata__' is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(file, absl::StrCat("'__metadata__' value for '", m.key(),
                                            "' is not a string"));
        }
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto entry = ParseEntry(it.key(), it.value(), data_size, file);
    if (!entry.ok()) return entry.status();
    header.entries.push_back(std::move(*entry));
  }

  // Offsets must tile [0, data_size) exactly, as the official library checks.
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : header.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const SafetensorsEntry& e = *sorted[i];
    if (e.begin < expected) {
      return InvalidTensor(file, e.name,
                           absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                                        "] overlap tensor '", sorted[i - 1]->name, "'"));
    }
    if (e.begin > expected) {
      return InvalidTensor(file, e.name,
                           absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                                        "] leave a gap after byte ", expected));
    }
    expected = e.end;
  }
  if (expected != data_size) {
    return Invalid(file, absl::StrCat("tensors cover ", expected, " bytes but the data section has ",
                                      data_size, " (trailing bytes or a truncated header)"));
  }
  return header;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsBuffer(absl::string_view buffer,
                                                         absl::string_view file,
                                                         uint64_t* data_start) {
  if (buffer.size() < 8) {
    return Invalid(file, absl::StrCat("file is ", buffer.size(),
                                      " bytes, too short for the 8-byte header length"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(buffer[i]);
  if (n > kMaxSafetensorsHeaderBytes) {
    return Invalid(file, absl::StrCat("header length ", n, " exceeds the ",
                                      kMaxSafetensorsHeaderBytes, "-byte limit"));
  }
  if (n > buffer.size() - 8) {
    return Invalid(file, absl::StrCat("header length ", n, " runs past the end of the file (",
                                      buffer.size(), " bytes; is it truncated?)"));
  }
  if (data_start != nullptr) *data_start = 8 + n;
  return ParseSafetensorsHeader(buffer.substr(8, n), buffer.size() - 8 - n, file);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(err)));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_size_ = static_cast<size_t>(st.st_size);
  if (file->map_size_ > 0) {
    file->map_ = ::mmap(nullptr, file->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (file->map_ == MAP_FAILED) {
      const int err = errno;
      file->map_ = nullptr;
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(path, ": mmap: ", std::strerror(err)));
    }
  }
  ::close(fd);  // the mapping keeps the file alive
  absl::string_view buffer(static_cast<const char*>(file->map_), file->map_size_);
  uint64_t data_start = 0;
  auto header = ParseSafetensorsBuffer(buffer, path, &data_start);
  if (!header.ok()) return header.status();
  file->header_ = std::move(*header);
  file->data_ = static_cast<const char*>(file->map_) + data_start;
  for (size_t i = 0; i < file->header_.entries.size(); ++i) {
    file->index_[file->header_.entries[i].name] = i;
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const SafetensorsEntry* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.entries[it->second];
}

TensorView SafetensorsFile::View(const SafetensorsEntry& entry) const {
  TensorView view;
  view.dtype = entry.dtype;
  view.shape = entry.shape;
  view.data = data_ + entry.begin;
  return view;
}

std::string SerializeSafetensors(const std::vector<SafetensorsWriteEntry>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
    data += t.bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text + data;
}

}  // namespace moeserve
