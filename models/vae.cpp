#include "models/vae.h"

#include <cmath>

namespace zoo {

VAEImpl::VAEImpl(const VAEOptions& options_) : options(options_) { reset(); }

void VAEImpl::reset() {
  enc_hidden = register_module("enc_hidden", torch::nn::Linear(options.input_dim(), options.hidden_dim()));
  enc_mu = register_module("enc_mu", torch::nn::Linear(options.hidden_dim(), options.latent_dim()));
  enc_logvar = register_module("enc_logvar", torch::nn::Linear(options.hidden_dim(), options.latent_dim()));
  dec_hidden = register_module("dec_hidden", torch::nn::Linear(options.latent_dim(), options.hidden_dim()));
  dec_out = register_module("dec_out", torch::nn::Linear(options.hidden_dim(), options.input_dim()));
}

std::pair<torch::Tensor, torch::Tensor> VAEImpl::encode(const torch::Tensor& x) {
  auto h = torch::relu(enc_hidden(x.flatten(1)));
  return {enc_mu(h), enc_logvar(h)};
}

torch::Tensor VAEImpl::decode(const torch::Tensor& z) { return dec_out(torch::relu(dec_hidden(z))); }

VAEOutput VAEImpl::forward(const torch::Tensor& x) {
  auto [mu, logvar] = encode(x);
  auto z = mu + torch::exp(0.5 * logvar) * torch::randn_like(mu);
  return {decode(z), mu, logvar, z};
}

torch::Tensor gaussian_kl(const torch::Tensor& mu, const torch::Tensor& logvar) {
  return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1);
}

ELBOTerms VAEImpl::elbo(const torch::Tensor& x, const VAEOutput& out) {
  // Both terms in float32: under CPU autocast the encoder's and decoder's outputs are bfloat16,
  // and CPU autocast (unlike CUDA's) would leave exp, pow and the sums over pixels in it.
  const auto f = torch::kFloat;
  // -log p(x|z) for a Bernoulli with logits l: BCE(l, x), summed over pixels.
  auto rec = torch::binary_cross_entropy_with_logits(out.logits.to(f), x.flatten(1).to(f), {}, {}, at::Reduction::None)
                 .sum(-1);
  return {rec, gaussian_kl(out.mu.to(f), out.logvar.to(f))};
}

torch::Tensor VAEImpl::log_likelihood(const torch::Tensor& x, int64_t k, int64_t chunk) {
  TORCH_CHECK(k > 0 && chunk > 0, "VAE::log_likelihood: k and chunk must be positive, got ", k, " and ", chunk);
  // log p(x) ~= logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k, z_i ~ q(z|x).
  auto xf = x.flatten(1);
  auto [mu, logvar] = encode(xf);
  const auto b = xf.size(0), zdim = mu.size(1);
  const double log2pi = std::log(2 * M_PI);
  std::vector<torch::Tensor> parts;
  for (int64_t done = 0; done < k; done += chunk) {
    const auto n = std::min(chunk, k - done);
    auto eps = torch::randn({n, b, zdim}, mu.options());
    auto z = mu + torch::exp(0.5 * logvar) * eps;  // (n, B, Z)
    auto log_q = (-0.5 * (eps.pow(2) + logvar + log2pi)).sum(-1);
    auto log_prior = (-0.5 * (z.pow(2) + log2pi)).sum(-1);
    auto logits = decode(z.view({n * b, zdim})).view({n, b, -1});
    auto log_px = -torch::binary_cross_entropy_with_logits(logits, xf.unsqueeze(0).expand_as(logits), {}, {},
                                                           at::Reduction::None)
                       .sum(-1);
    parts.push_back(log_px + log_prior - log_q);  // (n, B)
  }
  return torch::logsumexp(torch::cat(parts, 0), /*dim=*/0) - std::log(static_cast<double>(k));
}

}  // namespace zoo
