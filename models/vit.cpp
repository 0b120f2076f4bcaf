#include "models/vit.h"

namespace zoo {

EncoderBlockImpl::EncoderBlockImpl(const EncoderBlockOptions& options_) : options(options_) { reset(); }

void EncoderBlockImpl::reset() {
  const auto d = options.dim();
  ln_1 = register_module("ln_1", zoo::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6)));
  attention = register_module(
      "attention", MultiheadAttention(MultiheadAttentionOptions(d, options.heads()).dropout(options.attention_dropout())));
  ln_2 = register_module("ln_2", zoo::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6)));
  fc_1 = register_module("fc_1", torch::nn::Linear(d, options.mlp_dim()));
  fc_2 = register_module("fc_2", torch::nn::Linear(options.mlp_dim(), d));
  dropout = register_module("dropout", Dropout(options.dropout()));
}

torch::Tensor EncoderBlockImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  x = x + dropout(attention(ln_1(x), mask));                                          // Eq. 2
  x = x + dropout(fc_2(dropout(torch::gelu(fc_1(ln_2(x))))));                         // Eq. 3
  return x;
}

ViTImpl::ViTImpl(const ViTOptions& options_) : options(options_) { reset(); }

int64_t ViTImpl::num_patches() const {
  const auto side = options.image_size() / options.patch_size();
  return side * side;
}

void ViTImpl::reset() {
  TORCH_CHECK(options.patch_size() > 0 && options.heads() > 0, "ViT: patch_size and heads must be positive, got ",
              options.patch_size(), " and ", options.heads());
  TORCH_CHECK(options.image_size() % options.patch_size() == 0, "ViT: patch_size ", options.patch_size(),
              " does not divide image_size ", options.image_size());
  const auto d = options.dim();
  patch_embedding = register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(), d, options.patch_size()).stride(options.patch_size())));
  class_token = register_parameter("class_token", torch::zeros({1, 1, d}));
  position_embedding =
      register_parameter("position_embedding", torch::randn({1, 1 + num_patches(), d}) * 0.02);
  embedding_dropout = register_module("embedding_dropout", Dropout(options.dropout()));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i) {
    blocks->push_back(EncoderBlock(EncoderBlockOptions(d, options.heads(), options.mlp_dim())
                                       .dropout(options.dropout())
                                       .attention_dropout(options.attention_dropout())));
  }
  norm = register_module("norm", zoo::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6)));
  if (options.num_classes() > 0) {
    head = register_module("head", torch::nn::Linear(d, options.num_classes()));
    torch::NoGradGuard no_grad;
    head->weight.zero_();  // a zero-initialised head, as in the paper's fine-tuning setup
    head->bias.zero_();
  }
  // Xavier-uniform init for the linear layers (the original ViT code's and torchvision's), zero biases.
  torch::NoGradGuard no_grad;
  for (auto& block : *blocks) {
    auto& b = *block->as<EncoderBlock>();
    for (auto* lin : {b.attention->qkv.get(), b.attention->proj.get(), b.fc_1.get(), b.fc_2.get()}) {
      torch::nn::init::xavier_uniform_(lin->weight);
      if (lin->bias.defined()) lin->bias.zero_();
    }
  }
}

torch::Tensor ViTImpl::embed(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options.in_channels() &&
                  images.size(2) == options.image_size() && images.size(3) == options.image_size(),
              "ViT expects images of shape (B, ", options.in_channels(), ", ", options.image_size(), ", ",
              options.image_size(), "), got ", images.sizes());
  auto x = patch_embedding(images).flatten(2).transpose(1, 2);  // (B, N, D)
  auto cls = class_token.expand({x.size(0), 1, options.dim()});
  x = torch::cat({cls, x}, /*dim=*/1) + position_embedding;      // (B, 1 + N, D), Eq. 1
  return embedding_dropout(x);
}

torch::Tensor ViTImpl::encode(torch::Tensor tokens) {
  for (auto& block : *blocks) tokens = block->as<EncoderBlock>()->forward(tokens);
  return norm(tokens);
}

torch::Tensor ViTImpl::features(const torch::Tensor& images) {
  return encode(embed(images)).select(/*dim=*/1, 0);  // (B, D): y = LN(z_L^0), Eq. 4
}

torch::Tensor ViTImpl::forward(const torch::Tensor& images) {
  auto cls = features(images);
  return head ? head(cls) : cls;
}

}  // namespace zoo
