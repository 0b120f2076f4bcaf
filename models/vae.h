// Variational autoencoder: Kingma and Welling 2013, "Auto-Encoding Variational Bayes".
// Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))), prior p(z) = N(0, I), Bernoulli
// decoder p(x|z) on pixel intensities: an MLP of one hidden layer each way, as in the paper's
// Appendix C, with ReLU where the paper's MLPs use tanh.
#pragma once

#include <torch/torch.h>

namespace zoo {

struct VAEOptions {
  /// Pixels per image (28 x 28).
  TORCH_ARG(int64_t, input_dim) = 784;
  /// Width of the hidden layer of encoder and decoder.
  TORCH_ARG(int64_t, hidden_dim) = 400;
  /// Dimension of z.
  TORCH_ARG(int64_t, latent_dim) = 20;
};

struct VAEOutput {
  torch::Tensor logits;  // (B, D): Bernoulli logits of p(x|z)
  torch::Tensor mu;      // (B, Z)
  torch::Tensor logvar;  // (B, Z)
  torch::Tensor z;       // (B, Z): the reparameterized sample mu + sigma * eps
};

/// Per example: -ELBO split in its two terms, in nats.
struct ELBOTerms {
  torch::Tensor reconstruction;  // (B): -E_q[log p(x|z)], one-sample estimate
  torch::Tensor kl;              // (B): KL(q(z|x) || N(0, I)), closed form
  torch::Tensor neg_elbo() const { return reconstruction + kl; }
};

class VAEImpl : public torch::nn::Cloneable<VAEImpl> {
 public:
  explicit VAEImpl(const VAEOptions& options = {});
  void reset() override;

  /// x (B, ...) with values in [0, 1] -> (mu, logvar), each (B, Z).
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x);
  /// z (B, Z) -> Bernoulli logits (B, D).
  torch::Tensor decode(const torch::Tensor& z);
  /// Encode, reparameterize (z = mu + exp(logvar / 2) * eps, Sec. 2.4), decode.
  VAEOutput forward(const torch::Tensor& x);
  /// -ELBO terms of x under `out` (x flattened to (B, D), values in [0, 1]).
  static ELBOTerms elbo(const torch::Tensor& x, const VAEOutput& out);
  /// Importance-weighted estimate of log p(x) with k samples from q (Burda et al. 2015), (B).
  /// Differentiable (it is the IWAE bound), so it keeps the graph of all k samples unless called
  /// under torch::NoGradGuard, as evaluation should be.
  torch::Tensor log_likelihood(const torch::Tensor& x, int64_t k, int64_t chunk = 250);

  VAEOptions options;
  torch::nn::Linear enc_hidden{nullptr}, enc_mu{nullptr}, enc_logvar{nullptr};
  torch::nn::Linear dec_hidden{nullptr}, dec_out{nullptr};
};
TORCH_MODULE(VAE);

/// KL(N(mu, diag(exp(logvar))) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar)), (B). Appendix B.
torch::Tensor gaussian_kl(const torch::Tensor& mu, const torch::Tensor& logvar);

}  // namespace zoo
