// Frechet distance between Gaussians fitted to two sets of features (Heusel et al. 2017,
// "GANs Trained by a Two Time-Scale Update Rule", Eq. 6), on the features of a Fashion-MNIST
// classifier that zoo trains itself: the [CLS] feature of a vit_fashion_mnist checkpoint.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

namespace zoo {

class Task;

/// FID = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), features (N, D), computed in float64.
double frechet_distance(const torch::Tensor& features_a, const torch::Tensor& features_b);

/// Images (N, 1, 28, 28) in [0, 1] -> features (N, D) of a ViT classifier checkpoint.
class FeatureExtractor {
 public:
  explicit FeatureExtractor(const std::string& classifier_checkpoint, torch::Device device);
  ~FeatureExtractor();
  torch::Tensor features(const torch::Tensor& images, int64_t batch = 500);

 private:
  std::unique_ptr<Task> classifier_;
  torch::Device device_;
};

}  // namespace zoo
