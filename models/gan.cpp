#include "models/gan.h"

namespace zoo {

namespace nn = torch::nn;

GeneratorImpl::GeneratorImpl(const DCGANOptions& options_) : options(options_) { reset(); }

void GeneratorImpl::reset() {
  const auto f = options.generator_features();
  project = register_module("project", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(options.latent_dim(), f, 7).bias(false)));
  bn0 = register_module("bn0", nn::BatchNorm2d(f));
  up1 = register_module("up1", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(f, f / 2, 4).stride(2).padding(1).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(f / 2));
  up2 = register_module("up2", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(f / 2, options.channels(), 4).stride(2).padding(1)));
  dcgan_init(*this);
}

torch::Tensor GeneratorImpl::forward(const torch::Tensor& z) {
  auto x = torch::relu(bn0(project(z.view({z.size(0), z.size(1), 1, 1}))));  // (B, F, 7, 7)
  x = torch::relu(bn1(up1(x)));                                             // (B, F/2, 14, 14)
  return torch::tanh(up2(x));                                               // (B, C, 28, 28)
}

DiscriminatorImpl::DiscriminatorImpl(const DCGANOptions& options_) : options(options_) { reset(); }

void DiscriminatorImpl::reset() {
  const auto f = options.discriminator_features();
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(options.channels(), f / 2, 4).stride(2).padding(1)));
  conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(f / 2, f, 4).stride(2).padding(1).bias(false)));
  bn2 = register_module("bn2", nn::BatchNorm2d(f));
  out = register_module("out", nn::Conv2d(nn::Conv2dOptions(f, 1, 7)));
  dcgan_init(*this);
}

torch::Tensor DiscriminatorImpl::forward(const torch::Tensor& x) {
  // Any other size would still give a map of logits, flattened into more than B of them.
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.channels() && x.size(2) == 28 && x.size(3) == 28,
              "Discriminator: expected images (B, ", options.channels(), ", 28, 28), got ", x.sizes());
  auto h = torch::leaky_relu(conv1(x), 0.2);       // (B, F/2, 14, 14)
  h = torch::leaky_relu(bn2(conv2(h)), 0.2);       // (B, F, 7, 7)
  return out(h).view({-1});                        // (B)
}

void dcgan_init(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* c = m->as<nn::Conv2d>()) c->weight.normal_(0.0, 0.02);
    else if (auto* t = m->as<nn::ConvTranspose2d>()) t->weight.normal_(0.0, 0.02);
    else if (auto* b = m->as<nn::BatchNorm2d>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    }
  }
}

}  // namespace zoo
