// What `zoo embed` asks of a checkpoint: one vector per image or per text.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "train/config.h"

namespace zoo {

class Embedder {
 public:
  virtual ~Embedder() = default;
  virtual bool embeds_images() const { return false; }
  virtual bool embeds_texts() const { return false; }
  /// Grey images (N, 1, 28, 28) in [0, 1] -> (N, D) float32 on the CPU.
  virtual torch::Tensor embed_images(const torch::Tensor& images) {
    (void)images;
    throw UsageError("this model embeds texts, not images");
  }
  /// Texts -> (N, D) float32 on the CPU, each row independent of the others in the call.
  virtual torch::Tensor embed_texts(const std::vector<std::string>& texts) {
    (void)texts;
    throw UsageError("this model embeds images, not texts");
  }
};

}  // namespace zoo
