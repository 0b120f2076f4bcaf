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
#include <type_traits>
#include <utility>

#include <torch/torch.h>

namespace zoo {

/// x in `weight`'s floating type (x itself when they agree or the weight is undefined).
inline torch::Tensor in_dtype_of(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!weight.defined() || x.scalar_type() == weight.scalar_type() || !x.is_floating_point()) return x;
  return x.to(weight.scalar_type());
}

/// Whether Base is a virtual base of Derived: a static_cast from a virtual base down to Derived is
/// ill-formed, from an ordinary one it is not.
template <typename Base, typename Derived, typename = void>
struct is_virtual_base : std::is_base_of<Base, Derived> {};
template <typename Base, typename Derived>
struct is_virtual_base<Base, Derived, std::void_t<decltype(static_cast<Derived*>(std::declval<Base*>()))>>
    : std::false_type {};
template <typename Base, typename Derived>
inline constexpr bool is_virtual_base_v = is_virtual_base<Base, Derived>::value;

/// `Plain` (torch::nn's LayerNormImpl or GroupNormImpl) with its input cast by in_dtype_of.
/// clone() and pretty_print keep this type (torch::nn's Cloneable would copy the plain one).
template <typename Plain>
class CastingNorm : public Plain {
 public:
  using Plain::Plain;
  // A copy of `plain`, its registered parameters included. Up to LibTorch 2.1 Module is a virtual
  // base of torch::nn::Cloneable, which this class, the most derived, must copy itself or find
  // it default-constructed empty; from 2.2 (pytorch#110518) it is an ordinary base that Plain's
  // copy copies, and naming it here would not compile.
  template <typename P = Plain, std::enable_if_t<is_virtual_base_v<torch::nn::Module, P>, int> = 0>
  explicit CastingNorm(const Plain& plain) : torch::nn::Module(plain), Plain(plain) {}
  template <typename P = Plain, std::enable_if_t<!is_virtual_base_v<torch::nn::Module, P>, int> = 0>
  explicit CastingNorm(const Plain& plain) : Plain(plain) {}
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
