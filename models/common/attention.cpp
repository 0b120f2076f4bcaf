#include "models/common/attention.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <limits>
#include <optional>

#include "models/common/dropout.h"

namespace zoo {
namespace {

/// Float products at most this large (P Q R) are computed by tiny_product below, spread over
/// the threads, not by torch::bmm: the Transformer's (9 x 9 x 64, 9 x 64 x 9) take about a
/// microsecond of arithmetic, less than a call through ATen to OpenBLAS costs. Larger ones
/// (the ViT's 50 x 32 x 50) are torch::bmm's: a BLAS call each on the threads was no faster
/// than torch::bmm from 2^14 to 2^18, and at 0.75-0.91x its speed at two of three shapes
/// (README, Speed).
constexpr int64_t kTinyProduct = int64_t{1} << 14;

bool spread_over_threads(const torch::Tensor& a, const torch::Tensor& b) {
  return a.device().is_cpu() && b.device().is_cpu() && a.dim() == 3 && b.dim() == 3 && a.size(0) > 1 && at::get_num_threads() > 1 &&
         a.scalar_type() == torch::kFloat && b.scalar_type() == torch::kFloat &&
         a.size(1) * a.size(2) * b.size(2) <= kTinyProduct;
}

/// c (P, R) = a (P, Q) b (Q, R), each row-major and contiguous: for each row of c, a sum of
/// rows of b scaled by a's entries, the inner loop over c's row vectorised (and with AVX2
/// where the CPU has it, chosen at run time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
void tiny_product(const float* a, const float* b, float* __restrict__ c, int64_t p_rows, int64_t q_inner,
                  int64_t r_cols) {
  for (int64_t p = 0; p < p_rows; ++p) {
    float* __restrict__ row = c + p * r_cols;
    for (int64_t r = 0; r < r_cols; ++r) row[r] = 0;
    for (int64_t q = 0; q < q_inner; ++q) {
      const float x = a[p * q_inner + q];
      const float* brow = b + q * r_cols;
      for (int64_t r = 0; r < r_cols; ++r) row[r] += x * brow[r];
    }
  }
}

/// The N float products of a (N, P, Q) and b (N, Q, R), each by tiny_product on one of LibTorch's threads.
torch::Tensor bmm_on_threads(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "zoo::bmm: shapes ", a.sizes(), " and ", b.sizes(),
              " do not multiply");
  const int64_t n = a.size(0), p = a.size(1), q = a.size(2), r = b.size(2);
  const auto ac = a.detach().contiguous(), bc = b.detach().contiguous();
  auto out = torch::empty({n, p, r}, ac.options());
  const float* pa = ac.data_ptr<float>();
  const float* pb = bc.data_ptr<float>();
  float* pc = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) tiny_product(pa + i * p * q, pb + i * q * r, pc + i * p * r, p, q, r);
  });
  return out;
}

struct ThreadedBmm : torch::autograd::Function<ThreadedBmm> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return bmm_on_threads(a, b);
  }
  // d(ab)/da = g b^T, d(ab)/db = a^T g; through zoo::bmm, so a second derivative works too.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = zoo::bmm(g, saved[1].transpose(1, 2));
    if (ctx->needs_input_grad(1)) gb = zoo::bmm(saved[0].transpose(1, 2), g);
    return {ga, gb};
  }
};

}  // namespace

torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b) {
  if (!spread_over_threads(a, b)) return torch::bmm(a, b);
  if (!torch::GradMode::is_enabled() || (!a.requires_grad() && !b.requires_grad())) return bmm_on_threads(a, b);
  return ThreadedBmm::apply(a, b);
}

torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                           const torch::Tensor& v, const torch::Tensor& mask,
                                           double dropout_p) {
  // A bool mask would become a 0/1 bias and mask nothing (and PyTorch's own conventions for one
  // disagree: true = masked in nn.MultiheadAttention, true = attended in F.scaled_dot_product_attention).
  TORCH_CHECK(!mask.defined() || mask.is_floating_point(),
              "attention: the mask must be additive (float: 0 where attention is allowed, -inf where not), got ",
              mask.scalar_type(), "; zoo::padding_mask and zoo::causal_mask build one");
#if TORCH_VERSION_MAJOR >= 2
  // The mask converts to the optional the signature takes: c10::optional before 2.2, std::optional after.
  if (mask.defined()) return at::scaled_dot_product_attention(q, k, v, mask.to(q.scalar_type()), dropout_p);
  return at::scaled_dot_product_attention(q, k, v, {}, dropout_p);
#else
  // softmax(Q K^T / sqrt(d_k) + M) V, Eq. 1 of Vaswani et al. The heads are folded into the
  // batch for zoo::bmm (B H products of Tq x Dh x Tk), which reshape copies where needed, as
  // torch::matmul does; q is scaled rather than the scores (Tq Dh values, not Tq Tk).
  const auto b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2), dh = q.size(3);
  auto q3 = (q / std::sqrt(static_cast<double>(dh))).reshape({b * h, tq, dh});
  auto k3 = k.reshape({b * h, tk, dh}), v3 = v.reshape({b * h, tk, v.size(3)});
  auto scores = zoo::bmm(q3, k3.transpose(1, 2)).view({b, h, tq, tk});
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  auto probs = torch::softmax(scores, /*dim=*/-1);
  if (dropout_p > 0) probs = zoo::dropout(probs, dropout_p, /*training=*/true);
  return zoo::bmm(probs.reshape({b * h, tq, tk}), v3).view({b, h, tq, v.size(3)});
#endif
}

MultiheadAttentionImpl::MultiheadAttentionImpl(const MultiheadAttentionOptions& options_)
    : options(options_) {
  reset();
}

void MultiheadAttentionImpl::reset() {
  TORCH_CHECK(options.heads() > 0, "attention: heads must be positive, got ", options.heads());
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
