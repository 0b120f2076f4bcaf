// Dropout (Srivastava et al. 2014), inverted: in training each element is zeroed with
// probability p and the others are scaled by 1 / (1 - p), so evaluation is the identity.
// Shared by every model in the zoo.
#pragma once

#include <torch/torch.h>

namespace zoo {

/// The keep mask for `like`: 1 / (1 - p) with probability 1 - p, else 0, in like's dtype,
/// shape and device, never requiring grad. On CPU each element's draw is a hash (SplitMix64,
/// Steele et al. 2014) of one 64-bit seed taken from LibTorch's default CPU generator and the
/// element's index, computed in parallel; the mask is therefore set by torch::manual_seed and
/// by the generator state a checkpoint saves, and does not depend on the thread count.
/// Elsewhere (CUDA) it is LibTorch's bernoulli_.
torch::Tensor dropout_mask(const torch::Tensor& like, double p);

/// x * dropout_mask(x, p) when `training` and p > 0; x itself otherwise. p in [0, 1].
/// On CUDA this is torch::dropout (its fused kernel).
torch::Tensor dropout(const torch::Tensor& x, double p, bool training);

/// A module around zoo::dropout, in place of torch::nn::Dropout: same constructor, no state.
/// It exists for speed on CPU: LibTorch 1.13's CPU dropout without MKL draws its mask with a
/// serial bernoulli_; the whole dropout is about 1.8x slower than zoo's (scripts/bench dropout).
struct DropoutImpl : torch::nn::Cloneable<DropoutImpl> {
  explicit DropoutImpl(double p = 0.5);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;
  double p;
};
TORCH_MODULE(Dropout);

}  // namespace zoo
