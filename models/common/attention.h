// Multi-head scaled dot-product attention (Vaswani et al. 2017, Sec. 3.2),
// shared by ViT, the Transformer and CLIP's text encoder.
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

/// Batched matrix product a (N, P, Q) x b (N, Q, R) -> (N, P, R), as torch::bmm, gradient
/// included. On CPU with more than one intra-op thread, float products of at most 2^14
/// multiply-adds (the Transformer's: 9 x 64 x 9) are a plain vectorised loop spread over
/// LibTorch's threads, where a BLAS call through ATen costs more than their arithmetic.
/// Elsewhere torch::bmm.
torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b);

/// Keys and values already computed for a sequence, (B, H, T, Dh) each: what incremental
/// decoding keeps so that step t attends over steps < t without recomputing them.
struct KVCache {
  torch::Tensor k, v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
  /// Keeps batch rows `index` (B') in that order: beam search's reordering.
  void reorder(const torch::Tensor& index) {
    if (!k.defined()) return;
    k = k.index_select(0, index);
    v = v.index_select(0, index);
  }
};

class MultiheadAttentionImpl : public torch::nn::Cloneable<MultiheadAttentionImpl> {
 public:
  explicit MultiheadAttentionImpl(const MultiheadAttentionOptions& options);
  void reset() override;

  /// Self-attention: x (B, T, C) -> (B, T, C). With a cache, x holds the new positions
  /// only: their keys and values are appended to the cache and x attends over all of them.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {}, KVCache* cache = nullptr);
  /// Attention of x (B, Tq, C) over `context` (B, Tk, C) -> (B, Tq, C). With a cache, the
  /// context's keys and values are computed on the first call and reused after it.
  torch::Tensor forward_cross(const torch::Tensor& x, const torch::Tensor& context,
                              const torch::Tensor& mask = {}, KVCache* cache = nullptr);

  MultiheadAttentionOptions options;
  torch::nn::Linear qkv{nullptr};  // (C -> 3C): [q | k | v]
  torch::nn::Linear proj{nullptr};

 private:
  /// (B, T, C) -> (B, H, T, Dh)
  torch::Tensor split_heads(const torch::Tensor& x) const;
  /// q, k, v split into heads -> projected output (B, Tq, C).
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask);
};
TORCH_MODULE(MultiheadAttention);

/// Additive mask (T, T) with -inf above the diagonal: position t sees positions <= t.
torch::Tensor causal_mask(int64_t t, const torch::TensorOptions& options = {});

/// Additive mask (B, 1, 1, T) from a boolean key-padding mask (B, T), true = padding.
torch::Tensor padding_mask(const torch::Tensor& key_padding);

}  // namespace zoo
