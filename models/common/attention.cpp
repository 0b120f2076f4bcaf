#include "models/common/attention.h"

#include <ATen/autocast_mode.h>

#include <cmath>
#include <limits>

#include "models/common/dropout.h"

namespace zoo {

torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v, const torch::Tensor& mask,
                                           double dropout_p) {
#if TORCH_VERSION_MAJOR >= 2
  c10::optional<torch::Tensor> m;
  if (mask.defined()) m = mask.to(q.scalar_type());
  return at::scaled_dot_product_attention(q, k, v, m, dropout_p);
#else
  // softmax(Q K^T / sqrt(d_k) + M) V, Eq. 1 of Vaswani et al.
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  auto probs = torch::softmax(scores, /*dim=*/-1);
  if (dropout_p > 0) probs = zoo::dropout(probs, dropout_p, /*training=*/true);
  return torch::matmul(probs, v);
#endif
}

MultiheadAttentionImpl::MultiheadAttentionImpl(const MultiheadAttentionOptions& options_)
    : options(options_) {
  reset();
}

void MultiheadAttentionImpl::reset() {
  TORCH_CHECK(options.dim() % options.heads() == 0, "attention dim ", options.dim(),
              " is not divisible by heads ", options.heads());
  qkv = register_module(
      "qkv", torch::nn::Linear(torch::nn::LinearOptions(options.dim(), 3 * options.dim()).bias(options.bias())));
  proj = register_module(
      "proj", torch::nn::Linear(torch::nn::LinearOptions(options.dim(), options.dim()).bias(options.bias())));
}

torch::Tensor MultiheadAttentionImpl::split_heads(const torch::Tensor& x) const {
  const auto h = options.heads();
  return x.view({x.size(0), x.size(1), h, options.dim() / h}).transpose(1, 2);
}

torch::Tensor MultiheadAttentionImpl::attend(const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, const torch::Tensor& mask) {
  auto y = scaled_dot_product_attention(q, k, v, mask, is_training() ? options.dropout() : 0.0);  // (B, H, Tq, Dh)
  y = y.transpose(1, 2).reshape({q.size(0), q.size(2), options.dim()});                            // (B, Tq, C)
  return proj(y);
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask, KVCache* cache) {
#if TORCH_VERSION_MAJOR < 2
  // Inference without a mask or a cache on LibTorch 1.x: its fused kernel (projection, bias
  // and scaling, softmax, the two batched products in one op), torch.nn.MultiheadAttention's
  // "fast path". It has no backward, so only where no gradient is recorded. LibTorch 2.x
  // gets fused kernels through at::scaled_dot_product_attention below.
  // Autocast does not cover this op: under it, or for mixed dtypes, take the general path.
  if (!cache && !mask.defined() && !torch::GradMode::is_enabled() && x.dim() == 3 &&
      (!is_training() || options.dropout() == 0) && x.scalar_type() == qkv->weight.scalar_type() &&
      !at::autocast::is_enabled() && !at::autocast::is_cpu_enabled()) {
    const auto c = options.dim();
    auto qkv_bias = qkv->bias.defined() ? qkv->bias : torch::zeros({3 * c}, x.options());
    auto proj_bias = proj->bias.defined() ? proj->bias : torch::zeros({c}, x.options());
    return std::get<0>(at::_native_multi_head_attention(x, x, x, c, options.heads(), qkv->weight, qkv_bias,
                                                        proj->weight, proj_bias, c10::nullopt, /*need_weights=*/false));
  }
#endif
  auto qkv_out = qkv(x).chunk(3, /*dim=*/-1);
  auto q = split_heads(qkv_out[0]), k = split_heads(qkv_out[1]), v = split_heads(qkv_out[2]);
  if (cache) {
    if (cache->k.defined()) {
      k = torch::cat({cache->k, k}, /*dim=*/2);
      v = torch::cat({cache->v, v}, /*dim=*/2);
    }
    cache->k = k;
    cache->v = v;
  }
  return attend(q, k, v, mask);
}

torch::Tensor MultiheadAttentionImpl::forward_cross(const torch::Tensor& x, const torch::Tensor& context,
                                                    const torch::Tensor& mask, KVCache* cache) {
  // Same weights, split: W_q from the first C rows, W_k and W_v from the rest.
  const auto c = options.dim();
  const auto& w = qkv->weight;
  const auto& bias = qkv->bias;
  auto q = split_heads(
      torch::nn::functional::linear(x, w.narrow(0, 0, c), bias.defined() ? bias.narrow(0, 0, c) : bias));
  torch::Tensor k, v;
  if (cache && cache->k.defined()) {
    k = cache->k, v = cache->v;
  } else {
    auto kv = torch::nn::functional::linear(context, w.narrow(0, c, 2 * c),
                                            bias.defined() ? bias.narrow(0, c, 2 * c) : bias)
                  .chunk(2, /*dim=*/-1);
    k = split_heads(kv[0]), v = split_heads(kv[1]);
    if (cache) cache->k = k, cache->v = v;
  }
  return attend(q, k, v, mask);
}

torch::Tensor causal_mask(int64_t t, const torch::TensorOptions& options) {
  return torch::full({t, t}, -std::numeric_limits<float>::infinity(), options).triu(/*diagonal=*/1);
}

torch::Tensor padding_mask(const torch::Tensor& key_padding) {
  auto m = torch::zeros(key_padding.sizes(), torch::TensorOptions().dtype(torch::kFloat).device(key_padding.device()));
  m.masked_fill_(key_padding, -std::numeric_limits<float>::infinity());
  return m.unsqueeze(1).unsqueeze(2);  // (B, 1, 1, T)
}

}  // namespace zoo
