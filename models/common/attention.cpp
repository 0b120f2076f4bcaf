#include "models/common/attention.h"

#include <cmath>
#include <limits>

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
  if (dropout_p > 0) probs = torch::dropout(probs, dropout_p, /*train=*/true);
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

torch::Tensor MultiheadAttentionImpl::attend(const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, const torch::Tensor& mask) {
  const auto b = q.size(0), tq = q.size(1), tk = k.size(1);
  const auto h = options.heads(), dh = options.dim() / h;
  // (B, T, C) -> (B, H, T, Dh)
  auto split = [&](const torch::Tensor& x, int64_t t) { return x.view({b, t, h, dh}).transpose(1, 2); };
  auto y = scaled_dot_product_attention(split(q, tq), split(k, tk), split(v, tk), mask,
                                        is_training() ? options.dropout() : 0.0);
  y = y.transpose(1, 2).reshape({b, tq, options.dim()});  // (B, Tq, C)
  return proj(y);
}

torch::Tensor MultiheadAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto qkv_out = qkv(x).chunk(3, /*dim=*/-1);
  return attend(qkv_out[0], qkv_out[1], qkv_out[2], mask);
}

torch::Tensor MultiheadAttentionImpl::forward_cross(const torch::Tensor& x, const torch::Tensor& context,
                                                    const torch::Tensor& mask) {
  // Same weights, split: W_q from the first C rows, W_k and W_v from the rest.
  const auto c = options.dim();
  auto w = qkv->weight;
  auto bias = qkv->bias;
  auto q = torch::nn::functional::linear(x, w.narrow(0, 0, c), bias.defined() ? bias.narrow(0, 0, c) : bias);
  auto kv = torch::nn::functional::linear(context, w.narrow(0, c, 2 * c),
                                          bias.defined() ? bias.narrow(0, c, 2 * c) : bias)
                .chunk(2, /*dim=*/-1);
  return attend(q, kv[0], kv[1], mask);
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
