// Layer and group normalization for activations of a lower precision than their weights.
// Under autocast a normalization's input can be bfloat16 (a linear layer's or a convolution's
// output) while its weight and bias stay float32. CUDA autocast runs layer_norm and group_norm
// in float32 (casting the input up); LibTorch 1.13's CPU kernels instead refuse the mix
// ("expected scalar type BFloat16 but found Float"). These modules do what CUDA autocast does,
// on every device: an input of another floating type than the weight is cast to the weight's
// first, so the output is in the weight's type. Same parameters and names as torch::nn's.
#pragma once

#include <memory>
#include <sstream>
#include <string>

#include <torch/torch.h>

namespace zoo {

/// x in `weight`'s floating type (x itself when they agree or the weight is undefined).
inline torch::Tensor in_dtype_of(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!weight.defined() || x.scalar_type() == weight.scalar_type() || !x.is_floating_point()) return x;
  return x.to(weight.scalar_type());
}

/// `Plain` (torch::nn's LayerNormImpl or GroupNormImpl) with its input cast by in_dtype_of.
/// clone() and pretty_print keep this type (torch::nn's Cloneable would copy the plain one).
template <typename Plain>
class CastingNorm : public Plain {
 public:
  using Plain::Plain;
  // Module is a virtual base of torch::nn::Cloneable: this class, the most derived, copies it
  // (its registered parameters) itself, or it would be default-constructed empty.
  explicit CastingNorm(const Plain& plain) : torch::nn::Module(plain), Plain(plain) {}
  torch::Tensor forward(const torch::Tensor& x) { return Plain::forward(in_dtype_of(x, this->weight)); }
  std::shared_ptr<torch::nn::Module> clone(const torch::optional<torch::Device>& device = torch::nullopt) const override {
    return std::make_shared<CastingNorm>(*std::dynamic_pointer_cast<Plain>(Plain::clone(device)));
  }
  void pretty_print(std::ostream& stream) const override {
    std::ostringstream plain;
    Plain::pretty_print(plain);
    const std::string s = plain.str(), prefix = "torch::nn::";
    stream << (s.rfind(prefix, 0) == 0 ? "zoo::" + s.substr(prefix.size()) : s);
  }
};

using LayerNormImpl = CastingNorm<torch::nn::LayerNormImpl>;
TORCH_MODULE(LayerNorm);
using GroupNormImpl = CastingNorm<torch::nn::GroupNormImpl>;
TORCH_MODULE(GroupNorm);

}  // namespace zoo
