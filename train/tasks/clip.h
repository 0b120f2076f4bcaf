// What `zoo zero-shot` asks of a CLIP checkpoint.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace zoo {

class ZeroShotClassifier {
 public:
  virtual ~ZeroShotClassifier() = default;
  /// (L, E), one unit-length row per label: the mean of the text embeddings of prompts built of
  /// the label with every caption template (CLIP Sec. 3.1.4's prompt ensembling), normalised.
  /// Two labels whose prompts are the same tokens (Sneaker and SNEAKER under a lower-cased
  /// vocabulary) are a UsageError: they would split one probability between them.
  virtual torch::Tensor label_embeddings(const std::vector<std::string>& labels) = 0;
  /// (N, L) float on the CPU: each label's probability for each grey image (N, 1, 28, 28) in
  /// [0, 1], the labels given as label_embeddings' rows.
  virtual torch::Tensor classify(const torch::Tensor& images, const torch::Tensor& labels) = 0;
  /// The probability of each label for one grey image (1, 1, 28, 28) in [0, 1].
  std::vector<double> zero_shot(const torch::Tensor& image, const std::vector<std::string>& labels) {
    const auto p = classify(image, label_embeddings(labels))[0].to(torch::kDouble).contiguous();
    return {p.data_ptr<double>(), p.data_ptr<double>() + p.numel()};
  }
};

}  // namespace zoo
