// The DDPM noise predictor: a U-Net (Ronneberger et al. 2015) as used by Ho et al. 2020
// (Appendix B): sinusoidal time embedding, residual blocks with group norm and dropout,
// self-attention at the lower resolutions, skip connections between matching resolutions.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "models/common/attention.h"
#include "models/common/dropout.h"
#include "models/common/norm.h"

namespace zoo {

struct UNetOptions {
  /// Image channels in and out.
  TORCH_ARG(int64_t, channels) = 1;
  /// Side of the (square) input; must be divisible by 2^(levels - 1).
  TORCH_ARG(int64_t, image_size) = 28;
  /// Feature maps at the first level.
  TORCH_ARG(int64_t, base_channels) = 32;
  /// Feature maps of level i = base_channels * channel_mults[i]; each level halves the side.
  TORCH_ARG(std::vector<int64_t>, channel_mults) = std::vector<int64_t>{1, 2, 2};
  /// Residual blocks per level on the way down.
  TORCH_ARG(int64_t, res_blocks) = 2;
  /// Sides (in pixels) at which residual blocks are followed by self-attention.
  TORCH_ARG(std::vector<int64_t>, attention_resolutions) = std::vector<int64_t>{7};
  /// Dropout inside residual blocks.
  TORCH_ARG(double, dropout) = 0.1;
  /// Heads of each self-attention layer.
  TORCH_ARG(int64_t, heads) = 4;
};

/// (B) timesteps -> (B, dim) sinusoidal embedding (Vaswani et al. 2017, Sec. 3.5).
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

class ResBlockImpl : public torch::nn::Cloneable<ResBlockImpl> {
 public:
  ResBlockImpl(int64_t in, int64_t out, int64_t time_dim, double dropout);
  void reset() override;
  /// x (B, in, H, W), temb (B, time_dim) -> (B, out, H, W)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb);

  int64_t in, out, time_dim;
  double dropout_p;
  zoo::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::Linear time{nullptr};
  Dropout dropout{nullptr};
};
TORCH_MODULE(ResBlock);

/// Self-attention over the H x W positions of a feature map, with a residual connection.
class SpatialAttentionImpl : public torch::nn::Cloneable<SpatialAttentionImpl> {
 public:
  SpatialAttentionImpl(int64_t channels, int64_t heads);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, H, W) -> (B, C, H, W)

  int64_t channels, heads;
  zoo::GroupNorm norm{nullptr};
  MultiheadAttention attention{nullptr};
};
TORCH_MODULE(SpatialAttention);

class UNetImpl : public torch::nn::Cloneable<UNetImpl> {
 public:
  explicit UNetImpl(const UNetOptions& options = {});
  void reset() override;
  /// x_t (B, C, H, W), t (B) integer timesteps -> the prediction (eps, v or x0), (B, C, H, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t);

  UNetOptions options;
  torch::nn::Sequential time_mlp{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  zoo::GroupNorm norm_out{nullptr};
  torch::nn::ModuleList down{nullptr}, up{nullptr};  // ResBlock, SpatialAttention, Conv2d (resampling)
  ResBlock mid1{nullptr}, mid2{nullptr};
  SpatialAttention mid_attention{nullptr};

 private:
  enum class Op { kRes, kAttention, kDownsample, kUpsample };
  std::vector<Op> down_plan_, up_plan_;
};
TORCH_MODULE(UNet);

}  // namespace zoo
