// DCGAN: Radford et al. 2015, adapted to 28 x 28 grey images. Transposed-convolution
// generator and strided-convolution discriminator with batch norm (no pooling, no
// fully connected hidden layers, ReLU / Tanh in G, LeakyReLU(0.2) in D; Sec. 3). The three
// convolutions no batch norm follows (G's last, D's first and last) keep a bias, at LibTorch's
// default initialisation; the weights are N(0, 0.02) as in the paper.
#pragma once

#include <torch/torch.h>

namespace zoo {

struct DCGANOptions {
  /// Dimension of the noise z ~ N(0, I).
  TORCH_ARG(int64_t, latent_dim) = 100;
  /// Feature maps of the widest layer of G (at 7 x 7) and of D (at 7 x 7).
  TORCH_ARG(int64_t, generator_features) = 256;
  TORCH_ARG(int64_t, discriminator_features) = 128;
  /// Image channels. Both networks work on 28 x 28 images (7 -> 14 -> 28).
  TORCH_ARG(int64_t, channels) = 1;
};

/// z (B, latent) -> images (B, C, 28, 28) in [-1, 1].
class GeneratorImpl : public torch::nn::Cloneable<GeneratorImpl> {
 public:
  explicit GeneratorImpl(const DCGANOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& z);

  DCGANOptions options;
  torch::nn::ConvTranspose2d project{nullptr};  // z as (B, latent, 1, 1) -> (B, F, 7, 7)
  torch::nn::BatchNorm2d bn0{nullptr}, bn1{nullptr};
  torch::nn::ConvTranspose2d up1{nullptr};      // (B, F, 7, 7) -> (B, F/2, 14, 14)
  torch::nn::ConvTranspose2d up2{nullptr};      // -> (B, C, 28, 28)
};
TORCH_MODULE(Generator);

/// images (B, C, 28, 28) in [-1, 1] -> real/fake logits (B).
class DiscriminatorImpl : public torch::nn::Cloneable<DiscriminatorImpl> {
 public:
  explicit DiscriminatorImpl(const DCGANOptions& options = {});
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  DCGANOptions options;
  torch::nn::Conv2d conv1{nullptr};  // -> (B, F/2, 14, 14), no batch norm on the input layer
  torch::nn::Conv2d conv2{nullptr};  // -> (B, F, 7, 7)
  torch::nn::BatchNorm2d bn2{nullptr};
  torch::nn::Conv2d out{nullptr};    // 7 x 7 kernel -> (B, 1, 1, 1)
};
TORCH_MODULE(Discriminator);

/// Weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02) (Sec. 4).
void dcgan_init(torch::nn::Module& module);

}  // namespace zoo
