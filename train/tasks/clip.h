// What `zoo zero-shot` asks of a CLIP checkpoint.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace zoo {

class ZeroShotClassifier {
 public:
  virtual ~ZeroShotClassifier() = default;
  /// The probability of each label for a grey image (1, 1, 28, 28) in [0, 1], from prompts
  /// built of the label with every caption template (prompt ensembling).
  virtual std::vector<double> zero_shot(const torch::Tensor& image, const std::vector<std::string>& labels) = 0;
};

}  // namespace zoo
