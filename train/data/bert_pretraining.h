// BERT's pretraining examples (Devlin et al. 2018, Sec. 3.1 and Appendix A.1), built from
// documents of sentences of WordPiece ids:
//  - a document is cut into chunks of whole sentences of about max_length - 3 tokens (a
//    shorter random length with probability short_seq_prob); a chunk is split at a random
//    sentence boundary into segment A and the rest;
//  - next-sentence prediction: with probability 1/2 segment B is the rest of the chunk, the text
//    that really follows A (IsNext); otherwise B is taken from a random other document
//    (NotNext) and the unused sentences go back to the document. A chunk of one sentence has
//    no rest and is always NotNext (as in Google's create_pretraining_data.py), so the labels
//    are near 1/2 only where chunks hold several sentences: at 16 tokens (the short phase of
//    configs/bert_mlm.yaml) most are NotNext (docs/bert.md);
//  - [CLS] A [SEP] B [SEP], the longer segment trimmed at a random end to fit max_length;
//  - masked LM: mask_prob of the non-special tokens and [UNK] are picked (at least one, at most
//    max_predictions); a picked token becomes [MASK] 80% of the time, a random non-special
//    token 10%, and stays as it is 10%. Unpicked positions get the ignore label.
// Every random choice comes from a seeded generator, so a (seed, documents) pair always
// gives the same examples.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "models/wordpiece.h"

namespace zoo {

constexpr int64_t kIgnoreLabel = -100;

/// A small, portable random source: the same numbers on every platform and standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) {
    if (n == 0) throw std::invalid_argument("SplitMix64::below(0)");
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;)
      if (auto x = next(); x < limit) return x % n;
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  uint64_t state_;
};

struct PretrainingOptions {
  int64_t max_length = 128;
  double mask_prob = 0.15;
  int64_t max_predictions = 20;
  double short_seq_prob = 0.1;
};

/// How a position of an example was treated by masking.
enum class MaskKind : int8_t { kNone = 0, kMask = 1, kRandom = 2, kKeep = 3 };

struct PretrainingExample {
  std::vector<int64_t> input_ids;       // [CLS] A [SEP] B [SEP]
  std::vector<int64_t> token_type_ids;  // 0 for [CLS], A and the first [SEP]; 1 for B and the last [SEP]
  std::vector<int64_t> mlm_labels;      // the original id at picked positions, kIgnoreLabel elsewhere
  std::vector<MaskKind> mask_kind;      // per position
  int64_t next_sentence_label = 0;      // 0 IsNext, 1 NotNext
  // Where the segments came from: document, and sentences [begin, end).
  int64_t a_doc = 0, a_begin = 0, a_end = 0, b_doc = 0, b_begin = 0, b_end = 0;
};

/// A document: its sentences as WordPiece ids.
using TokenizedDocument = std::vector<std::vector<int64_t>>;

/// Examples from every document, in document order. Each document must hold a sentence.
std::vector<PretrainingExample> make_pretraining_examples(const std::vector<TokenizedDocument>& docs,
                                                          const WordPiece& vocab, const PretrainingOptions& options,
                                                          uint64_t seed);

/// Picks and corrupts tokens of one example for masked LM, as described above.
void mask_tokens(PretrainingExample& example, const WordPiece& vocab, const PretrainingOptions& options,
                 SplitMix64& rng);

}  // namespace zoo
