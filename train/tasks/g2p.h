// What `zoo g2p` asks of a grapheme-to-phoneme checkpoint.
#pragma once

#include <string>
#include <vector>

#include "train/tasks/task.h"

namespace zoo {

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
