// BERT's WordPiece tokenizer (Devlin et al. 2018; Wu et al. 2016): a basic tokenizer
// (clean, lower-case, strip accents, split on white space, punctuation and CJK
// characters), then greedy longest-match-first sub-words with "##" continuations.
// Loads a standard BERT vocab.txt, and builds a vocabulary from a corpus by merging the
// most frequent adjacent pieces (the byte-pair-encoding procedure of Sennrich et al. 2016,
// written out as WordPiece tokens).
//
// Defined behaviour on any input: bytes that are not valid UTF-8 become U+FFFD and are
// dropped with the other control characters; empty input gives no tokens. Lower-casing and
// accent stripping cover ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals and
// the combining diacritics (U+0300-U+036F); other scripts pass through unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace zoo {

struct WordPieceTrainOptions {
  /// Tokens in the vocabulary, special tokens included.
  int64_t vocab_size = 8192;
  /// A pair of pieces is merged only if it occurs at least this often.
  int64_t min_frequency = 2;
  /// Characters seen fewer times than this are left out (they become [UNK]).
  int64_t min_char_frequency = 1;
};

class WordPiece {
 public:
  static constexpr const char* kPad = "[PAD]";
  static constexpr const char* kUnk = "[UNK]";
  static constexpr const char* kCls = "[CLS]";
  static constexpr const char* kSep = "[SEP]";
  static constexpr const char* kMask = "[MASK]";

  WordPiece() = default;
  /// A vocabulary given as its tokens in id order; must hold the five special tokens.
  explicit WordPiece(std::vector<std::string> tokens, bool lower_case = true);
  /// Reads a BERT vocab.txt (one token per line, id = line number). std::runtime_error
  /// naming the file when it can't be read or lacks a special token.
  static WordPiece load(const std::string& path, bool lower_case = true);
  /// Builds a vocabulary from texts: special tokens, every character (as a word start and as a
  /// "##" continuation), then merged pieces in order of frequency.
  static WordPiece train(const std::vector<std::string>& texts, const WordPieceTrainOptions& options = {});

  /// The vocabulary as vocab.txt text (one token per line), and back.
  std::string to_text() const;
  static WordPiece from_text(const std::string& text, bool lower_case = true);
  void save(const std::string& path) const;

  /// Clean, lower-case, strip accents, split on white space and punctuation. The special
  /// tokens ([MASK], [SEP], ...) are kept whole, and so act as those tokens (Google's BERT
  /// splits them like any text; Hugging Face's tokenizers keep them by default).
  std::vector<std::string> basic_tokenize(const std::string& text) const;
  /// WordPiece tokens of one basic token: "unaffable" -> "un", "##aff", "##able"; [UNK] when it
  /// can't be covered or is longer than 100 characters.
  std::vector<std::string> split_word(const std::string& word) const;
  /// basic_tokenize, then split_word on each token.
  std::vector<std::string> tokenize(const std::string& text) const;
  std::vector<int64_t> encode(const std::string& text) const;
  /// Ids to text: pieces joined, "##" continuations glued to the piece before them.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const;

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  /// The id of a token; the [UNK] id when it is not in the vocabulary.
  int64_t id(const std::string& token) const;
  bool contains(const std::string& token) const { return index_.count(token) > 0; }
  const std::string& token(int64_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  bool is_special(int64_t id) const;
  int64_t pad_id() const { return pad_; }
  int64_t unk_id() const { return unk_; }
  int64_t cls_id() const { return cls_; }
  int64_t sep_id() const { return sep_; }
  int64_t mask_id() const { return mask_; }
  bool lower_case() const { return lower_case_; }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> index_;
  bool lower_case_ = true;
  int64_t pad_ = -1, unk_ = -1, cls_ = -1, sep_ = -1, mask_ = -1;
};

}  // namespace zoo
