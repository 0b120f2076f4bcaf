// Layer and group normalization for activations of a lower precision than their weights.
// Under autocast a normalization's input can be bfloat16 (a linear layer's or a convolution's
// output) while its weight and bias stay float32. CUDA autocast runs layer_norm and group_norm
// in float32 (casting the input up); LibTorch 1.13's CPU kernels instead refuse the mix
// ("expected scalar type BFloat16 but found Float"). These modules do what CUDA autocast does,
// on every device: an input of another floating type than the weight is cast to the weight's
// first, so the output is in the weight's type. Same parameters and names as torch::nn's.
#pragma once

#include <torch/torch.h>

namespace zoo {

/// x in `weight`'s floating type (x itself when they agree or the weight is undefined).
inline torch::Tensor in_dtype_of(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!weight.defined() || x.scalar_type() == weight.scalar_type() || !x.is_floating_point()) return x;
  return x.to(weight.scalar_type());
}

class LayerNormImpl : public torch::nn::LayerNormImpl {
 public:
  using torch::nn::LayerNormImpl::LayerNormImpl;
  torch::Tensor forward(const torch::Tensor& x) { return torch::nn::LayerNormImpl::forward(in_dtype_of(x, weight)); }
};
TORCH_MODULE(LayerNorm);

class GroupNormImpl : public torch::nn::GroupNormImpl {
 public:
  using torch::nn::GroupNormImpl::GroupNormImpl;
  torch::Tensor forward(const torch::Tensor& x) { return torch::nn::GroupNormImpl::forward(in_dtype_of(x, weight)); }
};
TORCH_MODULE(GroupNorm);

}  // namespace zoo
