// Multi-head scaled dot-product attention (Vaswani et al. 2017, Sec. 3.2),
// shared by ViT, and later the Transformer, BERT and CLIP.
#pragma once

#include <torch/torch.h>

namespace zoo {

struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) {}
  /// Model width; split evenly over the heads.
  TORCH_ARG(int64_t, dim);
  /// Number of attention heads.
  TORCH_ARG(int64_t, heads);
  /// Dropout on the attention probabilities (training only).
  TORCH_ARG(double, dropout) = 0.0;
  /// Whether the q/k/v and output projections have biases.
  TORCH_ARG(bool, bias) = true;
};

/// Scaled dot-product attention. q: (B, H, Tq, Dh), k and v: (B, H, Tk, Dh).
/// `mask` is additive and broadcastable to (B, H, Tq, Tk): 0 where attention is
/// allowed, -inf where it is not. Uses at::scaled_dot_product_attention on
/// LibTorch >= 2.0 (fused kernels), the explicit softmax(QK^T / sqrt(d)) V otherwise.
torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v, const torch::Tensor& mask,
                                           double dropout_p);

class MultiheadAttentionImpl : public torch::nn::Cloneable<MultiheadAttentionImpl> {
 public:
  explicit MultiheadAttentionImpl(const MultiheadAttentionOptions& options);
  void reset() override;

  /// Self-attention: x (B, T, C) -> (B, T, C).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  /// Attention of x (B, Tq, C) over `context` (B, Tk, C) -> (B, Tq, C).
  torch::Tensor forward_cross(const torch::Tensor& x, const torch::Tensor& context,
                              const torch::Tensor& mask = {});

  MultiheadAttentionOptions options;
  torch::nn::Linear qkv{nullptr};  // (C -> 3C): [q | k | v]
  torch::nn::Linear proj{nullptr};

 private:
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask);
};
TORCH_MODULE(MultiheadAttention);

/// Additive mask (T, T) with -inf above the diagonal: position t sees positions <= t.
torch::Tensor causal_mask(int64_t t, const torch::TensorOptions& options = {});

/// Additive mask (B, 1, 1, T) from a boolean key-padding mask (B, T), true = padding.
torch::Tensor padding_mask(const torch::Tensor& key_padding);

}  // namespace zoo
