#include "tokenizer/added_vocabulary.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace moeserve {
namespace {

// The last character of valid UTF-8 `text` (not empty).
char32_t LastChar(std::string_view text) {
  size_t start = text.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  return DecodeValidUtf8(text, &start);
}

// Start of the run of whitespace that ends `text` (HF: `\s*$`).
size_t TrailingWhitespaceStart(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    size_t pos = start;
    if (!IsUnicodeWhitespace(DecodeValidUtf8(text, &pos))) break;
    end = start;
  }
  return end;
}

// Length of the run of whitespace that starts `text` (HF: `^\s*`).
size_t LeadingWhitespaceLength(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = pos;
    if (!IsUnicodeWhitespace(DecodeValidUtf8(text, &next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::Insert(std::string_view key, int token) {
  if (key.empty()) return;
  first_byte[static_cast<unsigned char>(key[0])] = true;
  int node = 0;
  for (char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    auto it = nodes[node].children.find(byte);
    if (it == nodes[node].children.end()) {
      nodes.emplace_back();
      it = nodes[node].children.emplace(byte, static_cast<int>(nodes.size()) - 1).first;
    }
    node = it->second;
  }
  nodes[node].token = token;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer) {
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    const auto it = by_content_.find(token.content);
    if (it != by_content_.end()) {
      tokens_[it->second] = std::move(token);
    } else {
      by_content_[token.content] = static_cast<int>(tokens_.size());
      tokens_.push_back(std::move(token));
    }
  }
  for (int i = 0; i < static_cast<int>(tokens_.size()); ++i) {
    const AddedToken& token = tokens_[i];
    by_id_[token.id] = i;
    if (token.special) special_contents_.insert(token.content);
    if (!token.normalized) {
      token_strings_.push_back(token.content);
      raw_trie_.Insert(token.content, i);
    } else {
      token_strings_.push_back(normalizer != nullptr ? normalizer->Normalize(token.content)
                                                     : token.content);
      normalized_trie_.Insert(token_strings_.back(), i);
    }
  }
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const std::string* AddedVocabulary::IdToToken(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &token_strings_[it->second];
}

std::optional<int32_t> AddedVocabulary::FindByContent(std::string_view content) const {
  const auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

bool AddedVocabulary::IsSpecialContent(std::string_view content) const {
  return special_contents_.contains(content);
}

std::vector<AddedVocabulary::Match> AddedVocabulary::FindMatches(std::string_view text,
                                                                 const Trie& trie) const {
  std::vector<Match> out;
  if (trie.nodes.size() == 1) return out;
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    // Longest token starting at pos.
    int node = 0;
    int token = -1;
    size_t stop = pos;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto it = trie.nodes[node].children.find(static_cast<unsigned char>(text[i]));
      if (it == trie.nodes[node].children.end()) break;
      node = it->second;
      if (trie.nodes[node].token >= 0) {
        token = trie.nodes[node].token;
        stop = i + 1;
      }
    }
    if (token < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;  // the automaton resumes after the raw match, whatever follows
    const AddedToken& added = tokens_[token];
    if (added.single_word) {
      const bool start_space = start == 0 || !IsUnicodeWordChar(LastChar(text.substr(0, start)));
      size_t after = stop;
      const bool stop_space =
          stop == text.size() || !IsUnicodeWordChar(DecodeValidUtf8(text, &after));
      if (!start_space || !stop_space) continue;
    }
    if (added.lstrip) {
      start = std::max(TrailingWhitespaceStart(text.substr(0, start)), start_offset);
    }
    if (added.rstrip) stop += LeadingWhitespaceLength(text.substr(stop));
    out.push_back(Match{start, stop, token});
    start_offset = stop;
  }
  return out;
}

std::vector<AddedPiece> AddedVocabulary::Split(std::string_view text,
                                               const Normalizer* normalizer) const {
  std::vector<AddedPiece> pieces;
  // Appends the normalized-token split of one raw text piece.
  const auto add_text = [&](std::string_view raw, size_t origin_bytes) {
    std::string normalized =
        normalizer != nullptr ? normalizer->Apply(raw, &origin_bytes) : std::string(raw);
    const auto origin_at = [&](size_t offset) {
      return origin_bytes > offset ? origin_bytes - offset : 0;
    };
    size_t start_offset = 0;
    for (const Match& m : FindMatches(normalized, normalized_trie_)) {
      if (start_offset < m.begin) {
        pieces.push_back(AddedPiece{normalized.substr(start_offset, m.begin - start_offset),
                                    AddedPiece::kNoId,
                                    std::min(origin_at(start_offset), m.begin - start_offset)});
      }
      pieces.push_back(
          AddedPiece{normalized.substr(m.begin, m.end - m.begin), tokens_[m.token].id, 0});
      start_offset = m.end;
    }
    if (start_offset < normalized.size()) {
      pieces.push_back(
          AddedPiece{normalized.substr(start_offset), AddedPiece::kNoId, origin_at(start_offset)});
    }
  };

  // The first character of the input is where HF's original offsets are 0.
  const size_t first_char = text.empty() ? 0 : Utf8CharLength(static_cast<unsigned char>(text[0]));
  size_t start_offset = 0;
  for (const Match& m : FindMatches(text, raw_trie_)) {
    if (start_offset < m.begin) {
      add_text(text.substr(start_offset, m.begin - start_offset),
               start_offset == 0 ? first_char : 0);
    }
    pieces.push_back(
        AddedPiece{std::string(text.substr(m.begin, m.end - m.begin)), tokens_[m.token].id, 0});
    start_offset = m.end;
  }
  if (start_offset < text.size()) {
    add_text(text.substr(start_offset), start_offset == 0 ? first_char : 0);
  }
  return pieces;
}

}  // namespace moeserve
