// What `zoo fill-mask` asks of a masked-language-model checkpoint, and what fine-tuning
// takes from one.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "models/bert.h"
#include "models/wordpiece.h"
#include "train/tasks/task.h"

namespace zoo {

class MaskedLanguageModelTask : public Task {
 public:
  /// For each [MASK] in `text`, in order: the k most probable tokens and their probabilities.
  /// UsageError when the text has no [MASK] or is too long.
  virtual std::vector<std::vector<std::pair<std::string, double>>> fill_mask(const std::string& text, int64_t k) = 0;
  virtual const WordPiece& vocab() const = 0;
  /// The pretrained encoder (without the pretraining heads).
  virtual BertModel encoder() = 0;
};

}  // namespace zoo
