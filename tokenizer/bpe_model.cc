#include "tokenizer/bpe_model.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

constexpr std::string_view kMetaspace = "\u2581";

// One symbol of a word being merged: a token id and links to its live
// neighbours (HF's Word/Symbol). `len` is 0 once merged into its left
// neighbour.
struct Symbol {
  int32_t id;
  int prev;
  int next;
  size_t len;
};

struct QueuedMerge {
  int pos;
  uint32_t rank;
  int32_t new_id;
};

// Lowest rank first, then leftmost position.
struct MergeOrder {
  bool operator()(const QueuedMerge& a, const QueuedMerge& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
  }
};

void AddSymbol(int32_t id, size_t len, std::vector<Symbol>* symbols) {
  const int index = static_cast<int>(symbols->size());
  if (index > 0) (*symbols)[index - 1].next = index;
  symbols->push_back(Symbol{id, index - 1, -1, len});
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::vector<std::pair<std::string, int32_t>> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab: token \"", token, "\" has negative id ", id));
    }
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(static_cast<size_t>(max_id) + 1);
  model->id_present_.assign(static_cast<size_t>(max_id) + 1, false);
  model->token_to_id_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    model->id_to_token_[id] = token;
    model->id_present_[id] = true;
    model->token_to_id_[std::move(token)] = id;
  }

  const size_t prefix_len = options.continuing_subword_prefix.size();
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto a_id = model->TokenToId(a);
    const auto b_id = model->TokenToId(b);
    std::string merged = a;
    if (b.size() >= prefix_len &&
        std::string_view(b).substr(0, prefix_len) == options.continuing_subword_prefix) {
      merged.append(b, prefix_len, std::string::npos);
    } else {
      merged.append(b);
    }
    const auto new_id = model->TokenToId(merged);
    const std::string* missing = !a_id ? &a : !b_id ? &b : !new_id ? &merged : nullptr;
    if (missing != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("merges[", rank, "] (\"", a, "\", \"", b,
                                                     "\"): token \"", *missing,
                                                     "\" is not in the vocab"));
    }
    // Like HF's HashMap collect, a repeated pair keeps its last rank.
    model->merges_[PairKey(*a_id, *b_id)] = MergeResult{static_cast<uint32_t>(rank), *new_id};
  }

  for (int b = 0; b < 256; ++b) {
    const auto id = model->TokenToId(absl::StrFormat("<0x%02X>", b));
    model->byte_tokens_[b] = id ? *id : -1;
  }
  if (options.unk_token) model->unk_id_ = model->TokenToId(*options.unk_token);
  if (options.continuing_subword_prefix.empty() && options.end_of_word_suffix.empty() &&
      !options.ignore_merges && model->TokenToId(kMetaspace)) {
    bool cuttable = true;
    for (const auto& [token, id] : model->token_to_id_) {
      for (size_t pos = token.find(kMetaspace, 1); cuttable && pos != std::string::npos;
           pos = token.find(kMetaspace, pos + kMetaspace.size())) {
        cuttable = pos >= kMetaspace.size() &&
                   std::string_view(token).substr(pos - kMetaspace.size(), kMetaspace.size()) ==
                       kMetaspace;
      }
      if (!cuttable) break;
    }
    model->cut_before_metaspace_ = cuttable;
  }
  model->options_ = std::move(options);
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_present_[id]) {
    return nullptr;
  }
  return &id_to_token_[id];
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (!cut_before_metaspace_) {
    TokenizeUncut(word, ids);
    return;
  }
  size_t begin = 0;
  for (size_t pos = word.find(kMetaspace, 1); pos != std::string_view::npos;
       pos = word.find(kMetaspace, pos + kMetaspace.size())) {
    const bool after_metaspace =
        pos >= kMetaspace.size() &&
        word.substr(pos - kMetaspace.size(), kMetaspace.size()) == kMetaspace;
    if (!after_metaspace && pos > begin) {
      TokenizeUncut(word.substr(begin, pos - begin), ids);
      begin = pos;
    }
  }
  TokenizeUncut(word.substr(begin), ids);
}

void BpeModel::TokenizeUncut(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const auto id = TokenToId(word)) {
      ids->push_back(*id);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  MergeWord(word, ids);
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    if (cache_.size() < kCacheCapacity) {
      cache_.try_emplace(std::string(word), ids->begin() + first, ids->end());
    }
  }
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  // A pending run of unknown characters (byte length; 0 = none).
  size_t unk_len = 0;
  std::string scratch;
  for (size_t i = 0; i < word.size();) {
    const size_t begin = i;
    DecodeValidUtf8(word, &i);
    const size_t byte_len = i - begin;
    std::string_view piece = word.substr(begin, byte_len);
    const bool decorate = (begin != 0 && !options_.continuing_subword_prefix.empty()) ||
                          (i == word.size() && !options_.end_of_word_suffix.empty());
    if (decorate) {
      scratch.clear();
      if (begin != 0) scratch.append(options_.continuing_subword_prefix);
      scratch.append(piece);
      if (i == word.size()) scratch.append(options_.end_of_word_suffix);
      piece = scratch;
    }
    if (const auto id = TokenToId(piece)) {
      if (unk_len > 0) {
        AddSymbol(*unk_id_, unk_len, &symbols);
        unk_len = 0;
      }
      AddSymbol(*id, byte_len, &symbols);
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes = true;
      for (char c : piece) all_bytes &= byte_tokens_[static_cast<uint8_t>(c)] >= 0;
      if (all_bytes) {
        // As in HF, a pending unknown run is not flushed first.
        for (char c : piece) {
          AddSymbol(byte_tokens_[static_cast<uint8_t>(c)], 1, &symbols);
        }
        continue;
      }
    }
    if (unk_id_) {
      if (unk_len > 0 && options_.fuse_unk) {
        unk_len += byte_len;
      } else {
        if (unk_len > 0) AddSymbol(*unk_id_, unk_len, &symbols);
        unk_len = byte_len;
      }
    }
    // Without an unknown token the character is dropped, as in HF.
  }
  if (unk_len > 0) AddSymbol(*unk_id_, unk_len, &symbols);

  std::priority_queue<QueuedMerge, std::vector<QueuedMerge>, MergeOrder> queue;
  const auto find_merge = [&](int32_t a, int32_t b) -> const MergeResult* {
    const auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t k = 0; k + 1 < symbols.size(); ++k) {
    if (const MergeResult* m = find_merge(symbols[k].id, symbols[k + 1].id)) {
      queue.push(QueuedMerge{static_cast<int>(k), m->rank, m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next == -1) continue;
    const int right_pos = left.next;
    const Symbol right = symbols[right_pos];
    // Skip entries made stale by an earlier merge.
    const MergeResult* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    symbols[right_pos].len = 0;
    if (right.next >= 0) symbols[right.next].prev = top.pos;

    if (left.prev >= 0) {
      if (const MergeResult* m = find_merge(symbols[left.prev].id, left.id)) {
        queue.push(QueuedMerge{left.prev, m->rank, m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const MergeResult* m = find_merge(left.id, symbols[left.next].id)) {
        queue.push(QueuedMerge{top.pos, m->rank, m->new_id});
      }
    }
  }
  for (const Symbol& s : symbols) {
    if (s.len != 0) ids->push_back(s.id);
  }
}

}  // namespace moeserve
