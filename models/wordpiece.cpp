#include "models/wordpiece.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <unordered_set>

#include "models/common/utf8.h"

namespace zoo {
namespace {

constexpr char32_t kReplacement = 0xFFFD;
constexpr size_t kMaxWordChars = 100;

/// UTF-8 -> code points. A byte that does not start a valid, shortest-form sequence of a
/// scalar value becomes U+FFFD, and decoding goes on at the next byte.
std::u32string decode_utf8(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    char32_t cp = 0;
    const size_t len = utf8::sequence(p + i, n - i, cp);
    out.push_back(len ? cp : kReplacement);
    i += len ? len : 1;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& s) {
  std::string out;
  for (auto cp : s) append_utf8(out, cp);
  return out;
}

bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// Characters the basic tokenizer drops: C0/C1 controls, U+FFFD (undecodable bytes), zero-width format characters.
bool is_dropped(char32_t c) {
  return c == 0 || c == kReplacement || (c < 0x20 && !is_whitespace(c)) || (c >= 0x7F && c <= 0x9F && c != 0x85) ||
         (c >= 0x200B && c <= 0x200F) || c == 0xFEFF;
}

/// BERT treats every non-alphanumeric ASCII character as punctuation, and so do we; beyond
/// ASCII: Latin-1 punctuation and symbols, General Punctuation and CJK punctuation. BERT's own
/// rule is Unicode's P* categories, so beyond ASCII the two differ: these ranges split on Latin-1
/// symbols and letters such as £ ° × ½ ² µ and on U+00AD and U+202A-U+202E (which BERT drops),
/// and not on punctuation of other blocks (Greek, Arabic, full-width ： ； ？); a few more differ
/// inside these ranges (々 〇 ⁄ ＄ ＋). With a vocab.txt of Google's, ASCII text without a special
/// token's string ([SEP], ...) gives their tokenizer's pieces.
bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  if ((c >= 0xA1 && c <= 0xBF) || c == 0xD7 || c == 0xF7) return true;
  if (c >= 0x2010 && c <= 0x205E) return true;
  if (c >= 0x3001 && c <= 0x303F) return true;
  if (c >= 0xFF01 && c <= 0xFF0F) return true;
  return false;
}

bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2CEAF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;               // Latin-1 capitals
  if (c == 0x178) return 0xFF;                                          // Ÿ -> ÿ
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x138 && c != 0x149 && c != 0x17F) {
    // Latin Extended-A: capital/small pairs, even/odd except in 0x139-0x148 and 0x179-0x17E (odd/even).
    const bool odd_first = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_first ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;            // Greek
  if (c >= 0x410 && c <= 0x42F) return c + 32;                          // Cyrillic
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

/// The base letter of a small Latin-1 / Latin Extended-A letter with a diacritic (the first
/// character of its Unicode canonical decomposition); 0 when it has none.
char32_t strip_accent(char32_t c) {
  static const char* latin1 = "aaaaaa.ceeeeiiii.nooooo..uuuuy.y";  // U+00E0..U+00FF
  static const char* latin_ext_a =                                     // U+0100..U+017F
      "aaaaaaccccccccdd..eeeeeeeeeegggggggghh..iiiiiiiii...jjkk.llllll....nnnnnn...oooooo..rrrrrrsssssssstttt..uuuuuu"
      "uuuuuuwwyyyzzzzzz.";
  char b = '.';
  if (c >= 0xE0 && c <= 0xFF) b = latin1[c - 0xE0];
  else if (c >= 0x100 && c <= 0x17F) b = latin_ext_a[c - 0x100];
  return b == '.' ? 0 : static_cast<char32_t>(b);
}

bool is_combining_mark(char32_t c) { return c >= 0x300 && c <= 0x36F; }

}  // namespace

WordPiece::WordPiece(std::vector<std::string> tokens, bool lower_case)
    : tokens_(std::move(tokens)), lower_case_(lower_case) {
  for (size_t i = 0; i < tokens_.size(); ++i) index_.emplace(tokens_[i], static_cast<int64_t>(i));
  auto need = [&](const char* t) {
    auto it = index_.find(t);
    if (it == index_.end()) throw std::runtime_error(std::string("vocabulary has no ") + t + " token");
    return it->second;
  };
  pad_ = need(kPad), unk_ = need(kUnk), cls_ = need(kCls), sep_ = need(kSep), mask_ = need(kMask);
}

WordPiece WordPiece::from_text(const std::string& text, bool lower_case) {
  std::vector<std::string> tokens;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);
  }
  return WordPiece(std::move(tokens), lower_case);
}

WordPiece WordPiece::load(const std::string& path, bool lower_case) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    throw std::runtime_error(path + ": is not a regular file (a device, a pipe or a folder); give a vocab.txt");
  constexpr uintmax_t kMaxVocabBytes = uintmax_t{64} << 20;  // BERT's 30,522 tokens take 232 KB
  if (!ec && std::filesystem::exists(st) && std::filesystem::file_size(path, ec) > kMaxVocabBytes)
    throw std::runtime_error(path + ": over 64 MiB, too big for a vocabulary; give a vocab.txt, one token per line");
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read the vocabulary file");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return from_text(text.str(), lower_case);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what() + " (expected a BERT vocab.txt)");
  }
}

std::string WordPiece::to_text() const {
  std::string out;
  for (const auto& t : tokens_) out += t + "\n";
  return out;
}

void WordPiece::save(const std::string& path) const {
  std::ofstream out(path);
  out << to_text();
  if (!out) throw std::runtime_error(path + ": cannot write the vocabulary");
}

bool WordPiece::is_special(int64_t id) const {
  return id == pad_ || id == unk_ || id == cls_ || id == sep_ || id == mask_;
}

int64_t WordPiece::id(const std::string& token) const {
  auto it = index_.find(token);
  return it == index_.end() ? unk_ : it->second;
}

std::vector<std::string> WordPiece::basic_tokenize(const std::string& text) const {
  static const std::vector<std::string> specials{kPad, kUnk, kCls, kSep, kMask};
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    // The next special token, kept whole; the text before it is tokenized.
    size_t next = std::string::npos, len = 0;
    for (const auto& s : specials) {
      auto at = text.find(s, start);
      if (at < next) next = at, len = s.size();
    }
    const auto piece = text.substr(start, next == std::string::npos ? std::string::npos : next - start);
    std::u32string word;
    auto flush = [&] {
      if (!word.empty()) out.push_back(encode_utf8(word)), word.clear();
    };
    for (char32_t c : decode_utf8(piece)) {
      if (is_dropped(c)) continue;
      if (lower_case_) {
        c = to_lower(c);
        if (is_combining_mark(c)) continue;
        if (auto base = strip_accent(c)) c = base;
      }
      if (is_whitespace(c)) {
        flush();
      } else if (is_punctuation(c) || is_cjk(c)) {
        flush();
        out.push_back(encode_utf8(std::u32string(1, c)));
      } else {
        word.push_back(c);
      }
    }
    flush();
    if (next == std::string::npos) break;
    out.push_back(text.substr(next, len));
    start = next + len;
  }
  return out;
}

std::vector<std::string> WordPiece::split_word(const std::string& word) const {
  if (index_.count(word) && (word.size() < 2 || word.compare(0, 2, "##") != 0)) return {word};
  const auto chars = decode_utf8(word);
  if (chars.size() > kMaxWordChars) return {kUnk};
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start < chars.size()) {
    size_t end = chars.size();
    std::string found;
    for (; end > start; --end) {  // longest match first
      auto sub = encode_utf8(chars.substr(start, end - start));
      if (start > 0) sub = "##" + sub;
      if (index_.count(sub)) {
        found = std::move(sub);
        break;
      }
    }
    if (found.empty()) return {kUnk};  // the whole word, as BERT does
    pieces.push_back(std::move(found));
    start = end;
  }
  return pieces;
}

std::vector<std::string> WordPiece::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const auto& w : basic_tokenize(text)) {
    auto pieces = split_word(w);
    out.insert(out.end(), pieces.begin(), pieces.end());
  }
  return out;
}

std::vector<int64_t> WordPiece::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& t : tokenize(text)) ids.push_back(id(t));
  return ids;
}

std::string WordPiece::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  for (auto i : ids) {
    if (i < 0 || i >= size()) continue;
    if (skip_special && is_special(i) && i != unk_) continue;
    const auto& t = token(i);
    if (t.size() > 2 && t.compare(0, 2, "##") == 0) out += t.substr(2);
    else out += (out.empty() ? "" : " ") + t;
  }
  return out;
}

// ---------------------------------------------------------------- vocabulary building
WordPiece WordPiece::train(const std::vector<std::string>& texts, const WordPieceTrainOptions& options) {
  WordPiece basic(std::vector<std::string>{kPad, kUnk, kCls, kSep, kMask}, /*lower_case=*/true);
  std::unordered_map<std::string, int64_t> word_counts;
  for (const auto& t : texts)
    for (auto& w : basic.basic_tokenize(t)) ++word_counts[w];
  std::unordered_map<char32_t, int64_t> char_counts;
  for (const auto& [w, n] : word_counts)
    for (auto c : decode_utf8(w)) char_counts[c] += n;

  std::vector<std::string> symbols;  // id -> piece
  std::unordered_map<std::string, int> symbol_id;
  auto intern = [&](const std::string& s) {
    auto it = symbol_id.find(s);
    if (it != symbol_id.end()) return it->second;
    symbols.push_back(s);
    return symbol_id[s] = static_cast<int>(symbols.size() - 1);
  };

  // Words as symbol sequences, in a fixed order (sorted) so that the result is deterministic.
  struct Word {
    std::vector<int> syms;
    int64_t count;
  };
  std::vector<std::pair<std::string, int64_t>> sorted(word_counts.begin(), word_counts.end());
  std::sort(sorted.begin(), sorted.end());
  // Every character seen often enough, as a word start and as a "##" continuation, so that any
  // word made of them can be covered; then the words made only of those characters.
  std::vector<std::pair<char32_t, int64_t>> chars(char_counts.begin(), char_counts.end());
  std::sort(chars.begin(), chars.end());
  for (const auto& [c, n] : chars) {
    if (n < options.min_char_frequency) continue;
    const auto s = encode_utf8(std::u32string(1, c));
    intern(s);
    intern("##" + s);
  }
  std::vector<std::string> alphabet = symbols;
  std::sort(alphabet.begin(), alphabet.end());
  std::vector<Word> words;
  for (const auto& [w, n] : sorted) {
    const auto word_chars = decode_utf8(w);
    if (word_chars.size() > kMaxWordChars) continue;
    Word word{{}, n};
    bool keep = true;
    for (size_t i = 0; i < word_chars.size() && keep; ++i) {
      const auto s = (i ? "##" : "") + encode_utf8(std::u32string(1, word_chars[i]));
      auto it = symbol_id.find(s);
      if (it == symbol_id.end()) keep = false;
      else word.syms.push_back(it->second);
    }
    if (keep) words.push_back(std::move(word));
  }

  std::vector<std::string> vocab{kPad, kUnk, kCls, kSep, kMask};
  std::unordered_set<std::string> in_vocab(vocab.begin(), vocab.end());
  for (const auto& a : alphabet)
    if (in_vocab.insert(a).second) vocab.push_back(a);

  // Pair counts, the words each pair occurs in, and a max-heap with lazy deletion.
  auto key = [](int a, int b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); };
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::unordered_set<int>> pair_words;
  for (int wi = 0; wi < static_cast<int>(words.size()); ++wi) {
    const auto& s = words[static_cast<size_t>(wi)].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      pair_count[key(s[i], s[i + 1])] += words[static_cast<size_t>(wi)].count;
      pair_words[key(s[i], s[i + 1])].insert(wi);
    }
  }
  // count, merged piece, pair: the most frequent first; ties by the piece, then by the pair.
  using Entry = std::tuple<int64_t, std::string, uint64_t>;
  auto cmp = [](const Entry& a, const Entry& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) < std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) > std::get<1>(b);
    return std::get<2>(a) > std::get<2>(b);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> heap(cmp);
  auto merged_piece = [&](uint64_t k) {
    const auto& a = symbols[static_cast<size_t>(k >> 32)];
    const auto& b = symbols[static_cast<size_t>(k & 0xFFFFFFFFu)];
    return a + b.substr(2);  // b is always a "##" continuation
  };
  for (const auto& [k, n] : pair_count) heap.emplace(n, merged_piece(k), k);

  while (static_cast<int64_t>(vocab.size()) < options.vocab_size && !heap.empty()) {
    auto [n, piece, k] = heap.top();
    heap.pop();
    auto it = pair_count.find(k);
    if (it == pair_count.end() || it->second != n) continue;  // stale
    if (n < options.min_frequency) break;
    const int a = static_cast<int>(k >> 32), b = static_cast<int>(k & 0xFFFFFFFFu);
    const int c = intern(piece);
    if (in_vocab.insert(piece).second) vocab.push_back(piece);
    std::unordered_map<uint64_t, int64_t> delta;
    auto affected = std::move(pair_words[k]);
    pair_words.erase(k);
    for (int wi : affected) {
      auto& w = words[static_cast<size_t>(wi)];
      std::vector<int> next;
      bool changed = false;
      for (size_t i = 0; i < w.syms.size(); ++i) {
        if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
          next.push_back(c);
          ++i;
          changed = true;
        } else {
          next.push_back(w.syms[i]);
        }
      }
      if (!changed) continue;
      for (size_t i = 0; i + 1 < w.syms.size(); ++i) delta[key(w.syms[i], w.syms[i + 1])] -= w.count;
      for (size_t i = 0; i + 1 < next.size(); ++i) {
        delta[key(next[i], next[i + 1])] += w.count;
        pair_words[key(next[i], next[i + 1])].insert(wi);
      }
      w.syms = std::move(next);
    }
    for (const auto& [dk, dn] : delta) {
      if (dn == 0) continue;
      auto& cnt = pair_count[dk];
      cnt += dn;
      if (cnt <= 0) pair_count.erase(dk);
      else heap.emplace(cnt, merged_piece(dk), dk);
    }
  }
  return WordPiece(std::move(vocab), /*lower_case=*/true);
}

}  // namespace zoo
