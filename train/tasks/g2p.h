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
  virtual std::vector<std::vector<std::string>> pronounce(const std::vector<std::string>& words) = 0;
};

}  // namespace zoo
