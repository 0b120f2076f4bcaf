// What `zoo g2p` asks of a grapheme-to-phoneme checkpoint.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "train/tasks/task.h"

namespace zoo {

/// Issue 4's metrics over a split, word by word: the phone error rate (edits to the closest
/// reference pronunciation over that reference's length, both summed over words; of equally close
/// references the shorter, so that a tie never lowers the rate) and the word error rate (a word
/// is right when it equals any of its references).
struct PronunciationErrors {
  int64_t edits = 0, ref_phones = 0, wrong_words = 0, words = 0;
  void add(const std::vector<std::string>& hyp, const std::vector<std::vector<std::string>>& refs);
  double per() const { return static_cast<double>(edits) / static_cast<double>(std::max<int64_t>(ref_phones, 1)); }
  double wer() const { return static_cast<double>(wrong_words) / static_cast<double>(std::max<int64_t>(words, 1)); }
};

class G2PTask : public Task {
 public:
  /// The best pronunciation (ARPAbet phones) of each word. Words may be in any case; a word
  /// with a character other than the letters A-Z and the apostrophe is a UsageError naming it.
  /// With no_stress, the most probable pronunciation without stress marks: the beam's
  /// hypotheses that differ only in stress count as one (decode.no_stress=sum), or the best
  /// pronunciation's marks are dropped (decode.no_stress=strip).
  std::vector<std::vector<std::string>> pronounce(const std::vector<std::string>& words, bool no_stress) {
    std::vector<std::vector<std::string>> out;
    for (auto& best : pronounce_nbest(words, no_stress, 1)) out.push_back(std::move(best.front()));
    return out;
  }
  /// Up to k different pronunciations of each word, best first (pronounce's is the first): the
  /// beam's finished hypotheses (decode.beam_size bounds how many there are), with no_stress
  /// their pronunciations without stress marks, ranked as decode.no_stress says.
  virtual std::vector<std::vector<std::vector<std::string>>> pronounce_nbest(const std::vector<std::string>& words,
                                                                             bool no_stress, int64_t k) = 0;
};

}  // namespace zoo
