#include "models/unet.h"

#include <algorithm>
#include <cmath>

namespace zoo {

namespace nn = torch::nn;

namespace {
zoo::GroupNorm group_norm(int64_t channels) { return zoo::GroupNorm(nn::GroupNormOptions(std::min<int64_t>(8, channels), channels)); }
nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}
}  // namespace

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  const auto half = dim / 2;
  auto freqs = torch::exp(-std::log(10000.0) *
                          torch::arange(half, torch::TensorOptions().dtype(torch::kFloat).device(t.device())) / half);
  auto args = t.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);  // (B, half)
  return torch::cat({torch::sin(args), torch::cos(args)}, /*dim=*/1);  // (B, dim)
}

ResBlockImpl::ResBlockImpl(int64_t in_, int64_t out_, int64_t time_dim_, double dropout_)
    : in(in_), out(out_), time_dim(time_dim_), dropout_p(dropout_) {
  reset();
}

void ResBlockImpl::reset() {
  norm1 = register_module("norm1", group_norm(in));
  conv1 = register_module("conv1", conv3x3(in, out));
  time = register_module("time", nn::Linear(time_dim, out));
  norm2 = register_module("norm2", group_norm(out));
  dropout = register_module("dropout", Dropout(dropout_p));
  conv2 = register_module("conv2", conv3x3(out, out));
  if (in != out) skip = register_module("skip", nn::Conv2d(nn::Conv2dOptions(in, out, 1)));
  torch::NoGradGuard no_grad;
  conv2->weight.zero_();  // each block starts as the identity (Ho et al.'s zero init of the last conv)
  conv2->bias.zero_();
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  auto h = conv1(torch::silu(norm1(x)));
  h = h + time(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);  // add the time embedding per channel
  h = conv2(dropout(torch::silu(norm2(h))));
  return (skip ? skip(x) : x) + h;
}

SpatialAttentionImpl::SpatialAttentionImpl(int64_t channels_, int64_t heads_) : channels(channels_), heads(heads_) {
  reset();
}

void SpatialAttentionImpl::reset() {
  norm = register_module("norm", group_norm(channels));
  attention = register_module("attention", MultiheadAttention(MultiheadAttentionOptions(channels, heads)));
}

torch::Tensor SpatialAttentionImpl::forward(const torch::Tensor& x) {
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto tokens = norm(x).flatten(2).transpose(1, 2);  // (B, HW, C)
  auto y = attention(tokens).transpose(1, 2).reshape({b, c, h, w});
  return x + y;
}

UNetImpl::UNetImpl(const UNetOptions& options_) : options(options_) { reset(); }

void UNetImpl::reset() {
  const auto base = options.base_channels(), tdim = 4 * base;
  const auto& mults = options.channel_mults();
  const auto levels = static_cast<int64_t>(mults.size());
  TORCH_CHECK(levels >= 1 && options.image_size() % (1 << (levels - 1)) == 0, "UNet: image_size ",
              options.image_size(), " is not divisible by 2^", levels - 1);
  for (auto r : options.attention_resolutions()) {  // a side no level works at would be dropped without a word
    bool reached = false;
    for (int64_t level = 0; level < levels; ++level) reached |= (options.image_size() >> level) == r;
    TORCH_CHECK(reached, "UNet: attention resolution ", r, " is not the side of a level (", options.image_size(),
                " halved up to ", levels - 1, " times)");
  }
  auto attends = [&](int64_t side) {
    const auto& r = options.attention_resolutions();
    return std::find(r.begin(), r.end(), side) != r.end();
  };
  time_mlp = register_module("time_mlp", nn::Sequential(nn::Linear(base, tdim), nn::SiLU(), nn::Linear(tdim, tdim)));
  conv_in = register_module("conv_in", conv3x3(options.channels(), base));
  down = register_module("down", nn::ModuleList());
  up = register_module("up", nn::ModuleList());
  down_plan_.clear();
  up_plan_.clear();

  std::vector<int64_t> skips{base};  // channels of each saved skip, in push order
  int64_t ch = base, side = options.image_size();
  for (int64_t i = 0; i < levels; ++i) {
    const auto out = base * mults[i];
    for (int64_t r = 0; r < options.res_blocks(); ++r) {
      down->push_back(ResBlock(ch, out, tdim, options.dropout()));
      down_plan_.push_back(Op::kRes);
      ch = out;
      if (attends(side)) {
        down->push_back(SpatialAttention(ch, options.heads()));
        down_plan_.push_back(Op::kAttention);
      }
      skips.push_back(ch);
    }
    if (i + 1 < levels) {
      down->push_back(conv3x3(ch, ch, /*stride=*/2));
      down_plan_.push_back(Op::kDownsample);
      skips.push_back(ch);
      side /= 2;
    }
  }
  mid1 = register_module("mid1", ResBlock(ch, ch, tdim, options.dropout()));
  mid_attention = register_module("mid_attention", SpatialAttention(ch, options.heads()));
  mid2 = register_module("mid2", ResBlock(ch, ch, tdim, options.dropout()));
  for (int64_t i = levels - 1; i >= 0; --i) {
    const auto out = base * mults[i];
    for (int64_t r = 0; r <= options.res_blocks(); ++r) {  // one more block: it takes the skip of the resampler
      up->push_back(ResBlock(ch + skips.back(), out, tdim, options.dropout()));
      skips.pop_back();
      up_plan_.push_back(Op::kRes);
      ch = out;
      if (attends(side)) {
        up->push_back(SpatialAttention(ch, options.heads()));
        up_plan_.push_back(Op::kAttention);
      }
    }
    if (i > 0) {
      up->push_back(conv3x3(ch, ch));  // after a nearest-neighbour 2x upsampling
      up_plan_.push_back(Op::kUpsample);
      side *= 2;
    }
  }
  norm_out = register_module("norm_out", group_norm(ch));
  conv_out = register_module("conv_out", conv3x3(ch, options.channels()));
  torch::NoGradGuard no_grad;
  conv_out->weight.zero_();
  conv_out->bias.zero_();
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t) {
  // attention_resolutions were resolved against image_size: another side would move them (or, not
  // divisible by 2^(levels - 1), fail deep inside at a skip connection).
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.channels() && x.size(2) == options.image_size() &&
                  x.size(3) == options.image_size(),
              "UNet: expected x (B, ", options.channels(), ", ", options.image_size(), ", ", options.image_size(),
              "), got ", x.sizes());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "UNet: expected t (B) = (", x.size(0), "), got ", t.sizes());
  auto temb = time_mlp->forward(timestep_embedding(t, options.base_channels()));  // (B, 4 * base)
  auto h = conv_in(x);
  std::vector<torch::Tensor> skips{h};
  for (size_t i = 0; i < down_plan_.size(); ++i) {
    switch (down_plan_[i]) {
      case Op::kRes:
        h = down[i]->as<ResBlock>()->forward(h, temb);
        if (i + 1 == down_plan_.size() || down_plan_[i + 1] != Op::kAttention) skips.push_back(h);
        break;
      case Op::kAttention:
        h = down[i]->as<SpatialAttention>()->forward(h);
        skips.push_back(h);
        break;
      default:  // kDownsample
        h = down[i]->as<nn::Conv2d>()->forward(h);
        skips.push_back(h);
    }
  }
  h = mid2(mid_attention(mid1(h, temb)), temb);
  for (size_t i = 0; i < up_plan_.size(); ++i) {
    switch (up_plan_[i]) {
      case Op::kRes:
        h = up[i]->as<ResBlock>()->forward(torch::cat({h, skips.back()}, /*dim=*/1), temb);
        skips.pop_back();
        break;
      case Op::kAttention:
        h = up[i]->as<SpatialAttention>()->forward(h);
        break;
      default:  // kUpsample
        h = up[i]->as<nn::Conv2d>()->forward(torch::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2}));
    }
  }
  return conv_out(torch::silu(norm_out(h)));
}

}  // namespace zoo
