// Vision Transformer: Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words".
// Patches -> linear embedding, a learned [CLS] token, learned position embeddings,
// pre-norm Transformer encoder blocks (Eq. 2-3), classification head on [CLS] (Eq. 4).
#pragma once

#include <torch/torch.h>

#include "models/common/attention.h"
#include "models/common/dropout.h"
#include "models/common/norm.h"

namespace zoo {

struct ViTOptions {
  /// Side of the (square) input image in pixels.
  TORCH_ARG(int64_t, image_size) = 28;
  /// Side of a square patch; must divide image_size.
  TORCH_ARG(int64_t, patch_size) = 4;
  /// Input channels (1 for grey images).
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Output classes; 0 leaves out the head (forward returns the [CLS] feature).
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Token width D.
  TORCH_ARG(int64_t, dim) = 128;
  /// Number of encoder blocks L.
  TORCH_ARG(int64_t, depth) = 6;
  /// Attention heads per block.
  TORCH_ARG(int64_t, heads) = 4;
  /// Hidden width of each block's MLP.
  TORCH_ARG(int64_t, mlp_dim) = 256;
  /// Dropout after the embeddings, in the MLP and after attention.
  TORCH_ARG(double, dropout) = 0.0;
  /// Dropout on the attention probabilities.
  TORCH_ARG(double, attention_dropout) = 0.0;
};

struct EncoderBlockOptions {
  EncoderBlockOptions(int64_t dim, int64_t heads, int64_t mlp_dim) : dim_(dim), heads_(heads), mlp_dim_(mlp_dim) {}
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, mlp_dim);
  TORCH_ARG(double, dropout) = 0.0;
  TORCH_ARG(double, attention_dropout) = 0.0;
};

/// Pre-norm Transformer block: x + MSA(LN(x)), then + MLP(LN(x)) with GELU.
class EncoderBlockImpl : public torch::nn::Cloneable<EncoderBlockImpl> {
 public:
  explicit EncoderBlockImpl(const EncoderBlockOptions& options);
  void reset() override;
  /// x: (B, T, D) -> (B, T, D); mask is additive, broadcastable to (B, H, T, T).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask = {});

  EncoderBlockOptions options;
  zoo::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  MultiheadAttention attention{nullptr};
  torch::nn::Linear fc_1{nullptr}, fc_2{nullptr};
  Dropout dropout{nullptr};
};
TORCH_MODULE(EncoderBlock);

class ViTImpl : public torch::nn::Cloneable<ViTImpl> {
 public:
  explicit ViTImpl(const ViTOptions& options = {});
  void reset() override;

  /// images (B, C, H, W) -> logits (B, num_classes), or the [CLS] feature (B, D) without a head.
  torch::Tensor forward(const torch::Tensor& images);
  /// images (B, C, H, W) -> the [CLS] feature (B, D) after the final layer norm, the head's input
  /// (timm's pre-logits features).
  torch::Tensor features(const torch::Tensor& images);
  /// images (B, C, H, W) -> token embeddings with positions (B, 1 + N, D), [CLS] first.
  torch::Tensor embed(const torch::Tensor& images);
  /// tokens (B, T, D) -> encoded tokens (B, T, D), after the final layer norm.
  torch::Tensor encode(torch::Tensor tokens);

  int64_t num_patches() const;

  ViTOptions options;
  torch::nn::Conv2d patch_embedding{nullptr};  // stride = kernel = patch: one linear map per patch
  torch::Tensor class_token;                   // (1, 1, D)
  torch::Tensor position_embedding;            // (1, 1 + N, D)
  Dropout embedding_dropout{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  zoo::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ViT);

}  // namespace zoo
