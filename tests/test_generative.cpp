// Generative models and samplers. The samplers are checked without a trained network:
// for Gaussian data x0 ~ N(mu, diag(s^2)) the ideal noise predictor is known in closed form,
// E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab), so DDPM and DDIM
// driven by it must reproduce the data's mean and variance.
#include "tests/catch.h"

#include <limits>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "helpers.h"
#include "models/ddim.h"
#include "models/ddpm.h"
#include "models/gan.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/vit.h"
#include "train/checkpoint.h"
#include "train/data/fashion_mnist.h"
#include "train/fid.h"
#include "train/image.h"
#include "train/trainer.h"

using namespace zoo;
using Catch::Matchers::Contains;
using zoo::test::q;

namespace {

/// The (width, height) of the PNG `zoo sample` writes for n 28x28 images in `columns` full columns:
/// each image drawn at twice its size (56 pixels) with 2 pixels of padding around and between.
std::pair<int64_t, int64_t> sample_png_size(int64_t n, int64_t columns) {
  const int64_t rows = (n + columns - 1) / columns;
  return {columns * (56 + 2) + 2, rows * (56 + 2) + 2};
}

const auto kMu = torch::tensor({0.5, -0.3, 0.0}, torch::kFloat);
const auto kStd = torch::tensor({0.4, 0.8, 1.5}, torch::kFloat);

/// The ideal denoiser for x0 ~ N(kMu, kStd^2), returning the prediction type asked for.
Denoiser ideal(const NoiseScheduleImpl& schedule, Prediction prediction) {
  return [&schedule, prediction](const torch::Tensor& x, const torch::Tensor& t) {
    auto ab = schedule.alpha_bar(t, x);
    auto eps = (1 - ab).sqrt() * (x - ab.sqrt() * kMu) / (ab * kStd.pow(2) + 1 - ab);
    auto x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt();
    if (prediction == Prediction::kX0) return x0;
    if (prediction == Prediction::kV) return ab.sqrt() * eps - (1 - ab).sqrt() * x0;
    return eps;
  };
}

void check_moments(const torch::Tensor& x, double tol_mean, double tol_std_rel) {
  auto mean = x.mean(0), std = x.std(0);
  INFO("mean " << mean << " std " << std);
  CHECK((mean - kMu).abs().max().item<double>() < tol_mean);
  CHECK(((std - kStd).abs() / kStd).max().item<double>() < tol_std_rel);
}

/// `task`'s interpolate(2, 4) after seed 5: eight images, row by row, whose first column is
/// sample(2) after the same seed and whose last is sample(2) after that seed and one more draw
/// of the latents (the walk's other end); the images between are neither end.
void check_interpolation(Task& task, const std::vector<int64_t>& latent_shape) {
  torch::manual_seed(5);
  auto walk = task.interpolate(2, 4);
  REQUIRE(walk.sizes() == torch::IntArrayRef({8, 1, 28, 28}));
  torch::manual_seed(5);
  auto from = task.sample(2);
  torch::manual_seed(5);
  (void)torch::randn(latent_shape);
  auto to = task.sample(2);
  for (int64_t row = 0; row < 2; ++row) {
    INFO("row " << row);
    CHECK(torch::allclose(walk[row * 4], from[row], 1e-4, 1e-4));
    CHECK(torch::allclose(walk[row * 4 + 3], to[row], 1e-4, 1e-4));
    CHECK((walk[row * 4 + 1] - walk[row * 4]).abs().max().item<double>() > 1e-6);
    CHECK((walk[row * 4 + 1] - walk[row * 4 + 3]).abs().max().item<double>() > 1e-6);
  }
}

}  // namespace

TEST_CASE("noise schedules: alpha-bar decreases from ~1 to ~0 and buffers are registered", "[diffusion]") {
  for (const char* kind : {"linear", "cosine"}) {
    NoiseSchedule s(NoiseScheduleOptions().kind(kind));
    INFO(kind);
    auto ab = s->alphas_cumprod;
    CHECK((ab.slice(0, 1) < ab.slice(0, 0, -1)).all().item<bool>());
    CHECK(ab[0].item<double>() > 0.99);
    CHECK(ab[-1].item<double>() < 0.01);
    CHECK((s->betas > 0).all().item<bool>());
    CHECK(s->named_buffers().size() == 4);
    // beta-tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t) <= beta_t
    CHECK((s->posterior_variance <= s->betas + 1e-12).all().item<bool>());
  }
  NoiseSchedule linear;
  CHECK(linear->betas[0].item<double>() == Approx(1e-4));
  CHECK(linear->betas[999].item<double>() == Approx(0.02));
  // beta_1 = 0 gives beta-tilde_1 = 0 (its log -inf); a beta of 1 leaves no signal. A falling
  // schedule is odd but valid (zoo train refuses it for a new run).
  CHECK_THROWS(NoiseSchedule(NoiseScheduleOptions().beta_start(0)));
  CHECK_THROWS(NoiseSchedule(NoiseScheduleOptions().beta_end(1)));
  CHECK_NOTHROW(NoiseSchedule(NoiseScheduleOptions().beta_start(0.03)));
  // The figures the README and zoo train's refusal give: the paper's linear schedule's alpha-bar_T
  // falls below float's smallest normal from T = 8,633, and is 0 in float from T = 10,277.
  auto last = [](int64_t T) { return NoiseSchedule(NoiseScheduleOptions().timesteps(T))->alphas_cumprod[T - 1].item<double>(); };
  CHECK(last(8632) >= std::numeric_limits<float>::min());
  CHECK(last(8633) < std::numeric_limits<float>::min());
  CHECK(static_cast<float>(last(10276)) > 0);
  CHECK(static_cast<float>(last(10277)) == 0);
}

TEST_CASE("q(x_t | x0) has mean sqrt(ab) x0 and variance 1 - ab", "[diffusion]") {
  NoiseSchedule s;
  torch::manual_seed(0);
  const int64_t n = 200000;
  auto x0 = torch::full({n, 1}, 0.7);
  for (int64_t t : {0, 100, 500, 999}) {
    auto tt = torch::full({n}, t, torch::kLong);
    auto xt = s->q_sample(x0, tt, torch::randn({n, 1}));
    const double ab = s->alphas_cumprod[t].item<double>();
    INFO("t = " << t);
    CHECK(xt.mean().item<double>() == Approx(std::sqrt(ab) * 0.7).margin(0.01));
    CHECK(xt.var().item<double>() == Approx(1 - ab).margin(0.01));
  }
}

TEST_CASE("prediction types convert to the same x0 and eps", "[diffusion]") {
  NoiseSchedule s;
  torch::manual_seed(1);
  auto x0 = torch::randn({8, 3}), noise = torch::randn({8, 3});
  auto t = torch::randint(0, 1000, {8}, torch::kLong);
  auto xt = s->q_sample(x0, t, noise);
  for (auto p : {Prediction::kEpsilon, Prediction::kV, Prediction::kX0}) {
    auto target = s->target(x0, noise, t, p);  // a perfect network outputs its target
    CHECK(torch::allclose(s->predict_x0(xt, t, target, p), x0, 1e-3, 1e-3));
    CHECK(torch::allclose(s->predict_eps(xt, t, target, p), noise, 1e-3, 1e-3));
  }
}

TEST_CASE("DDPM ancestral sampling with the ideal predictor reproduces the data's moments", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::NoGradGuard g;
  for (bool variance_beta : {false, true}) {
    torch::manual_seed(2);
    auto x = ddpm_sample(*s, ideal(*s, Prediction::kEpsilon), torch::randn({20000, 3}),
                         DDPMSamplerOptions().clip_x0(false).variance_beta(variance_beta));
    INFO("variance " << (variance_beta ? "beta" : "beta-tilde"));
    check_moments(x, 0.04, 0.06);
  }
}

TEST_CASE("DDIM with the ideal predictor reproduces the data's moments for any eta and prediction", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::NoGradGuard g;
  for (auto [eta, pred] : std::vector<std::pair<double, Prediction>>{
           {0.0, Prediction::kEpsilon}, {0.5, Prediction::kEpsilon}, {1.0, Prediction::kEpsilon},
           {0.0, Prediction::kV}, {0.5, Prediction::kX0}}) {
    torch::manual_seed(3);
    auto x = ddim_sample(*s, ideal(*s, pred), torch::randn({20000, 3}),
                         DDIMSamplerOptions().steps(250).eta(eta).prediction(pred).clip_x0(false));
    INFO("S = 250, eta = " << eta << ", prediction " << static_cast<int>(pred));
    check_moments(x, 0.04, 0.06);
  }
}

TEST_CASE("DDIM's error in the variance shrinks as S grows (a first-order ODE solver)", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::NoGradGuard g;
  auto std_error = [&](int64_t steps) {
    torch::manual_seed(3);
    auto x = ddim_sample(*s, ideal(*s, Prediction::kEpsilon), torch::randn({20000, 3}),
                         DDIMSamplerOptions().steps(steps).clip_x0(false));
    return ((x.std(0) - kStd).abs() / kStd).max().item<double>();
  };
  const double e10 = std_error(10), e50 = std_error(50), e250 = std_error(250);
  INFO("relative std error: S=10 " << e10 << ", S=50 " << e50 << ", S=250 " << e250);
  CHECK(e10 > e50);
  CHECK(e50 > e250);
  CHECK(e50 < 0.10);
}

TEST_CASE("DDIM with eta = 1 and S = T is DDPM with beta-tilde (Eq. 16)", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::manual_seed(4);
  auto xt = torch::randn({16, 3}), out = torch::randn({16, 3}), noise = torch::randn({16, 3});
  for (int64_t t : {999, 500, 1}) {
    auto a = ddim_step(*s, out, t, t - 1, xt, noise, 1.0, Prediction::kEpsilon, false).prev_sample;
    auto b = ddpm_step(*s, out, t, xt, noise, DDPMSamplerOptions().clip_x0(false)).prev_sample;
    INFO("t = " << t);
    CHECK(torch::allclose(a, b, 1e-4, 1e-5));
  }
}

TEST_CASE("DDIM with eta = 0 is bit-identical for the same seed", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::NoGradGuard g;
  auto run = [&](double eta) {
    torch::manual_seed(5);
    return ddim_sample(*s, ideal(*s, Prediction::kEpsilon), torch::randn({64, 3}),
                       DDIMSamplerOptions().steps(25).eta(eta).clip_x0(false));
  };
  CHECK(torch::equal(run(0.0), run(0.0)));
  CHECK(torch::equal(run(0.7), run(0.7)));
  torch::manual_seed(5);
  auto x_T = torch::randn({64, 3});
  auto a = ddim_sample(*s, ideal(*s, Prediction::kEpsilon), x_T, DDIMSamplerOptions().steps(25).clip_x0(false));
  torch::manual_seed(99);  // eta = 0 uses no noise: the result depends on x_T alone
  auto b = ddim_sample(*s, ideal(*s, Prediction::kEpsilon), x_T, DDIMSamplerOptions().steps(25).clip_x0(false));
  CHECK(torch::equal(a, b));
}

TEST_CASE("the sampling loops equal a loop of the public step functions, bit for bit", "[diffusion][sampler]") {
  // ddpm_sample and ddim_sample read the schedule onto the host once; ddpm_step and ddim_step read it
  // at each call. Both must give the same values.
  NoiseSchedule s;
  torch::NoGradGuard g;
  auto net = ideal(*s, Prediction::kEpsilon);
  torch::manual_seed(7);
  const auto x_T = torch::randn({32, 3});
  for (bool variance_beta : {false, true}) {
    const auto opts = DDPMSamplerOptions().variance_beta(variance_beta);
    torch::manual_seed(8);
    auto a = ddpm_sample(*s, net, x_T, opts);
    torch::manual_seed(8);
    auto b = x_T;
    for (int64_t t = s->timesteps() - 1; t >= 0; --t) {
      auto out = net(b, torch::full({b.size(0)}, t, torch::kLong));
      auto noise = t > 0 ? torch::randn_like(b) : torch::Tensor();
      b = ddpm_step(*s, out, t, b, noise, opts).prev_sample;
    }
    INFO("DDPM, variance " << (variance_beta ? "beta" : "beta-tilde"));
    CHECK(torch::equal(a, b));
  }
  for (double eta : {0.0, 0.6}) {
    const auto opts = DDIMSamplerOptions().steps(20).eta(eta).spacing(Spacing::kTrailing);
    torch::manual_seed(9);
    auto a = ddim_sample(*s, net, x_T, opts);
    torch::manual_seed(9);
    auto b = x_T;
    const auto ts = ddim_timesteps(s->timesteps(), 20, Spacing::kTrailing);
    for (size_t i = 0; i < ts.size(); ++i) {
      auto out = net(b, torch::full({b.size(0)}, ts[i], torch::kLong));
      auto noise = eta > 0 ? torch::randn_like(b) : torch::Tensor();
      b = ddim_step(*s, out, ts[i], i + 1 < ts.size() ? ts[i + 1] : -1, b, noise, eta, Prediction::kEpsilon, true)
              .prev_sample;
    }
    INFO("DDIM, eta " << eta);
    CHECK(torch::equal(a, b));
  }
}

TEST_CASE("DDIM inversion then sampling returns to the start", "[diffusion][sampler]") {
  NoiseSchedule s;
  torch::NoGradGuard g;
  torch::manual_seed(6);
  auto x0 = kMu + kStd * torch::randn({512, 3});
  auto opts = DDIMSamplerOptions().steps(200).clip_x0(false);
  auto x_T = ddim_invert(*s, ideal(*s, Prediction::kEpsilon), x0, opts);
  // x_T should look like N(0, I): the inversion maps the data distribution to the prior.
  CHECK(x_T.mean().abs().item<double>() < 0.1);
  CHECK(x_T.std().item<double>() == Approx(1.0).margin(0.1));
  auto back = ddim_sample(*s, ideal(*s, Prediction::kEpsilon), x_T, opts);
  auto err = (back - x0).abs().mean().item<double>();
  INFO("mean abs error " << err);
  CHECK(err < 0.025);  // x0 has a spread of 0.4 to 1.5 per dimension
}

TEST_CASE("DDIM timestep spacings", "[diffusion]") {
  CHECK(ddim_timesteps(1000, 10, Spacing::kLinspace) ==
        std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0});
  CHECK(ddim_timesteps(1000, 10, Spacing::kLeading) == std::vector<int64_t>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
  CHECK(ddim_timesteps(1000, 10, Spacing::kTrailing) == std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
  CHECK(ddim_timesteps(1000, 1000, Spacing::kLinspace).size() == 1000);
  CHECK_THROWS(ddim_timesteps(1000, 0, Spacing::kLinspace));
}

TEST_CASE("slerp keeps the norm of unit-norm endpoints and hits them at 0 and 1", "[diffusion]") {
  torch::manual_seed(7);
  auto a = torch::randn({2, 784}), b = torch::randn({2, 784});
  a = a / a.norm(2, 1, true), b = b / b.norm(2, 1, true);
  CHECK(torch::allclose(slerp(a, b, 0.0), a, 1e-5, 1e-5));
  CHECK(torch::allclose(slerp(a, b, 1.0), b, 1e-5, 1e-5));
  CHECK(slerp(a, b, 0.5).norm(2, 1).sub(1).abs().max().item<double>() < 1e-4);
  // The same endpoint twice (two copies of one image's latent) stays there; a zero vector gives no NaN.
  CHECK(torch::allclose(slerp(a, a, 0.3), a, 1e-5, 1e-5));
  CHECK(torch::isfinite(slerp(torch::zeros_like(a), b, 0.5)).all().item<bool>());
}

TEST_CASE("VAE: the closed-form KL agrees with a Monte-Carlo estimate", "[vae]") {
  torch::manual_seed(8);
  auto mu = torch::randn({4, 5}), logvar = torch::randn({4, 5}) * 0.5;
  auto closed = gaussian_kl(mu, logvar);
  const int64_t n = 400000;
  auto z = mu + torch::exp(0.5 * logvar) * torch::randn({n, 4, 5});
  auto log_q = (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + std::log(2 * M_PI))).sum(-1);
  auto log_p = (-0.5 * (z.pow(2) + std::log(2 * M_PI))).sum(-1);
  auto mc = (log_q - log_p).mean(0);
  INFO("closed " << closed << " mc " << mc);
  CHECK(torch::allclose(closed, mc, 0.02, 0.05));
}

TEST_CASE("VAE: shapes, and the importance-weighted log p(x) is at least the ELBO", "[vae]") {
  torch::manual_seed(9);
  VAE vae;
  auto x = torch::rand({6, 1, 28, 28});
  auto out = vae->forward(x);
  CHECK(out.logits.sizes() == torch::IntArrayRef({6, 784}));
  CHECK(out.mu.sizes() == torch::IntArrayRef({6, 20}));
  torch::NoGradGuard g;
  auto elbo = torch::zeros({6});
  for (int i = 0; i < 50; ++i) elbo -= VAEImpl::elbo(x, vae->forward(x)).neg_elbo() / 50;
  auto log_px = vae->log_likelihood(x, 1000);
  INFO("elbo " << elbo << " log p(x) " << log_px);
  CHECK((log_px >= elbo).all().item<bool>());
}

TEST_CASE("VAE: the importance-weighted log p(x) is exact when q(z|x) is the prior and the decoder ignores z",
          "[vae]") {
  // Then every weight p(x|z) p(z) / q(z|x) is p(x|.), and so is their mean: log p(x) = log p(x|.) for
  // any k. A missing -log k, log p(z) or log q(z|x) term, or a chunk dropped, moves the estimate.
  torch::manual_seed(11);
  VAE vae;
  torch::NoGradGuard g;
  for (auto* layer : {&vae->enc_mu, &vae->enc_logvar}) {
    (*layer)->weight.zero_();
    (*layer)->bias.zero_();
  }
  vae->dec_hidden->weight.zero_();
  auto x = torch::rand({5, 1, 28, 28});
  auto l = vae->dec_out(torch::relu(vae->dec_hidden->bias)).unsqueeze(0);  // the one set of logits
  auto exact = (x.flatten(1) * l - torch::softplus(l)).sum(-1);             // sum of x log s(l) + (1 - x) log(1 - s(l))
  for (int64_t k : {1, 7, 1000}) {
    auto est = vae->log_likelihood(x, k, /*chunk=*/3);
    INFO("k " << k << ": " << est << " exact " << exact);
    CHECK(torch::allclose(est, exact, 1e-5, 1e-3));
  }
}

TEST_CASE("DCGAN and U-Net shapes", "[gan][unet]") {
  Generator g;
  Discriminator d;
  auto img = g->forward(torch::randn({3, 100}));
  CHECK(img.sizes() == torch::IntArrayRef({3, 1, 28, 28}));
  CHECK((img.abs() <= 1).all().item<bool>());
  CHECK(d->forward(img).sizes() == torch::IntArrayRef({3}));
  UNet unet(UNetOptions().base_channels(16).res_blocks(1).attention_resolutions({14, 7}));
  auto x = torch::randn({2, 1, 28, 28});
  CHECK(unet->forward(x, torch::tensor({0, 999})).sizes() == x.sizes());
  CHECK(timestep_embedding(torch::tensor({0, 5}), 32).sizes() == torch::IntArrayRef({2, 32}));
  // Other sizes are refused, not run through (D would give 4 logits an image at 32 x 32; the
  // U-Net's attention would move).
  CHECK_THROWS_WITH(d->forward(torch::randn({3, 1, 32, 32})), Contains("Discriminator: expected images (B, 1, 28, 28)"));
  CHECK_THROWS_WITH(unet->forward(torch::randn({2, 1, 32, 32}), torch::tensor({0, 1})),
                    Contains("UNet: expected x (B, 1, 28, 28)"));
  CHECK_THROWS_WITH(unet->forward(x, torch::tensor({0})), Contains("UNet: expected t (B) = (2)"));
}

TEST_CASE("library misuse: samplers keep no graph, the schedule stays float64, bad arguments are refused", "[diffusion]") {
  torch::manual_seed(0);
  NoiseSchedule schedule(NoiseScheduleOptions().timesteps(50));
  UNet unet(UNetOptions().base_channels(8).channel_mults({1, 2}).res_blocks(1).attention_resolutions({}));
  Denoiser net = [&](const torch::Tensor& x, const torch::Tensor& t) { return unet->forward(x, t); };
  auto x_T = torch::randn({2, 1, 28, 28});
  // The network's parameters require gradients, but sampling records no graph over its steps.
  CHECK_FALSE(ddim_sample(*schedule, net, x_T, DDIMSamplerOptions().steps(3)).requires_grad());
  CHECK_FALSE(ddim_invert(*schedule, net, x_T, DDIMSamplerOptions().steps(3)).requires_grad());
  CHECK_FALSE(ddpm_sample(*schedule, net, x_T, DDPMSamplerOptions()).requires_grad());
  CHECK(torch::GradMode::is_enabled());  // and the caller's mode is back
  // Cast to half precision with a module that holds it, the schedule keeps its float64 values
  // (in half, alpha-bar_0 = 0.9999 would round to 1).
  auto holder = std::make_shared<torch::nn::Module>();
  holder->register_module("schedule", schedule);
  holder->register_module("unet", unet);
  const auto before = schedule->alphas_cumprod.clone();
  holder->to(torch::kHalf);
  CHECK(unet->conv_out->weight.scalar_type() == torch::kHalf);
  for (const auto& b : schedule->buffers()) CHECK(b.scalar_type() == torch::kDouble);
  CHECK(torch::equal(schedule->alphas_cumprod, before));
  VAE vae;
  CHECK_THROWS_WITH(vae->log_likelihood(torch::rand({2, 1, 28, 28}), 10, 0), Contains("k and chunk must be positive"));
}

TEST_CASE("the U-Net takes a training step under the CPU's bf16 autocast (train.precision=bf16)", "[diffusion]") {
  // Its GroupNorms get the bf16 output of convolutions there: refused by LibTorch 1.13's
  // torch::nn::GroupNorm, normalized in float by zoo::GroupNorm (models/common/norm.h).
  torch::manual_seed(0);
  UNet unet(UNetOptions().base_channels(8).channel_mults({1, 2}).res_blocks(1).attention_resolutions({14}));
  auto x = torch::randn({2, 1, 28, 28});
  torch::manual_seed(1);  // the same dropout masks in both
  const auto reference = torch::mse_loss(unet->forward(x, torch::tensor({3, 40})), x);
  torch::Tensor loss;
  {
    torch::manual_seed(1);
    zoo::Autocast amp(true, torch::kBFloat16, c10::DeviceType::CPU);
    auto out = unet->forward(x, torch::tensor({3, 40}));
    CHECK(out.scalar_type() == torch::kBFloat16);
    loss = torch::mse_loss(out.to(torch::kFloat), x);
  }
  test::check_backward_in_float(*unet, loss, reference);
}

TEST_CASE("VAE: under the CPU's bf16 autocast both ELBO terms are float32 (train.precision=bf16)", "[vae]") {
  // The encoder's and decoder's outputs are bf16 there; CPU autocast, unlike CUDA's, would leave
  // the KL's exp, pow and sum in bf16 (steps of 0.125 near a KL of 25).
  torch::manual_seed(1);
  VAE vae;
  auto x = torch::rand({4, 1, 28, 28});
  ELBOTerms terms, plain;
  VAEOutput out;
  {
    zoo::Autocast amp(true, torch::kBFloat16, c10::DeviceType::CPU);
    out = vae->forward(x);
    CHECK(out.mu.scalar_type() == torch::kBFloat16);
    terms = VAEImpl::elbo(x, out);
  }
  CHECK(terms.reconstruction.scalar_type() == torch::kFloat);
  CHECK(terms.kl.scalar_type() == torch::kFloat);
  // The same numbers as the terms of the same bf16 outputs computed in float32 without autocast.
  const auto f = torch::kFloat;
  plain = VAEImpl::elbo(x, {out.logits.to(f), out.mu.to(f), out.logvar.to(f), out.z});
  CHECK(torch::allclose(terms.kl, plain.kl, 1e-5, 1e-6));
  CHECK(torch::allclose(terms.reconstruction, plain.reconstruction, 1e-5, 1e-4));
  // No float32 twin to compare the gradients with: under autocast the noise of z is drawn in bf16,
  // another draw than float32's from the same seed; the terms are checked against float32 above.
  test::check_backward_in_float(*vae, terms.neg_elbo().mean());
}

TEST_CASE("zoo sample: trains a tiny DDPM, samples with DDPM and DDIM, bad checkpoints exit 2", "[cli][diffusion]") {
  auto dir = test::scratch("sample");
  auto cfg = dir + "/ddpm.yaml";
  std::ofstream(cfg) << "task: ddpm_fashion_mnist\n"
                        "model: {base_channels: 8, channel_mults: \"1,2\", res_blocks: 1, attention_resolutions: \"14\", heads: 2}\n"
                        "diffusion: {timesteps: 40}\n"
                        "sample: {grid: 4, steps: 4}\n"
                        "data: {root: " + test::yaml_str(test::data_root()) + ", train_limit: 256, eval_limit: 64}\n"
                        "train: {device: cpu, threads: 1, batch_size: 16, steps: 3, log_every: 1, eval_every: 0, ema: true}\n";
  test::check_refused("train --config " + q(cfg) + " --set diffusion.beta_start=0 --run-dir " + q(dir + "/beta0"),
                      "diffusion.beta_start: must be above 0, got 0");
  test::check_refused("train --config " + q(cfg) + " --set diffusion.beta_start=0.05 --run-dir " + q(dir + "/beta0"),
                      "diffusion.beta_start: 0.05 is above diffusion.beta_end 0.02");
  CHECK(!std::filesystem::exists(dir + "/beta0"));
  auto train = test::run("cd " + q(dir) + " && " + test::zoo_bin() + " train --config " + q(cfg) + " --run-dir runs/ddpm_tiny");
  INFO(train.output);
  REQUIRE(train.code == 0);
  auto ckpt = dir + "/runs/ddpm_tiny/checkpoints/best.pt";
  auto ddim = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --steps 5 --eta 0 --n 4 --out " +
                        q(dir + "/a.png"));
  INFO(ddim.output);
  CHECK(ddim.code == 0);
  CHECK(test::png_size(dir + "/a.png") == sample_png_size(4, 4));  // --n 4: one row (--columns 8 at most)
  CHECK(test::run(test::zoo_bin() + " sample ddpm --checkpoint " + q(ckpt) + " --n 2 --out " + q(dir + "/b.png")).code == 0);
  CHECK(test::png_size(dir + "/b.png") == sample_png_size(2, 2));
  auto ddim_flag = test::run(test::zoo_bin() + " sample ddpm --checkpoint " + q(ckpt) + " --steps 5");
  CHECK(ddim_flag.code == 2);  // DDPM's sampler takes every step: --steps is DDIM's
  CHECK_THAT(ddim_flag.output, Contains("--steps is a DDIM setting"));
  auto sampler = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --set sample.sampler=ddpm");
  CHECK(sampler.code == 2);  // the command names the sampler
  CHECK_THAT(sampler.output, Contains("--set sample.sampler=ddpm: zoo sample names the sampler"));
  auto side = test::run(test::zoo_bin() + " train --config " + q(cfg) + " --set model.attention_resolutions=7 --run-dir " +
                        q(dir + "/side"));
  CHECK(side.code == 2);  // two levels work at 28 and 14
  CHECK_THAT(side.output, Contains("model.attention_resolutions: 7 is not a side of this U-Net's levels (28, 14)"));
  // Without --checkpoint, ddim takes the newest DDPM run under runs/.
  // FID against real images through a (tiny, briefly trained) ViT classifier's features.
  auto vit_cfg = dir + "/vit.yaml";
  std::ofstream(vit_cfg) << test::tiny_vit_yaml(2);
  REQUIRE(test::run(test::zoo_bin() + " train --config " + q(vit_cfg) + " --run-dir " + q(dir + "/vit")).code == 0);
  auto fid = test::run(test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --split test --set eval.fid_classifier=" +
                       q(dir + "/vit/checkpoints/best.pt") +
                       " --set eval.fid_samples=64 --set eval.fid_floor=true --set sample.steps=3");
  INFO(fid.output);
  REQUIRE(fid.code == 0);
  CHECK_THAT(fid.output, Contains("\"fid\":") && Contains("\"fid_floor_train_vs_test\":") && Contains("\"fid_samples\":64"));
  auto fid_wrong = test::run(test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --set eval.fid_classifier=" + q(ckpt));
  CHECK(fid_wrong.code == 2);
  CHECK_THAT(fid_wrong.output, Contains("FID needs a vit_fashion_mnist checkpoint"));
  // FID's samples start from the evaluated run's train.seed (not the classifier's): the same seed
  // gives the same FID, another seed another.
  auto fid_at = [&](const std::string& seed) {
    auto r = test::run(test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --split test --set eval.fid_classifier=" +
                       q(dir + "/vit/checkpoints/best.pt") + " --set eval.fid_samples=64 --set sample.steps=3 --set train.seed=" +
                       seed);
    INFO(r.output);
    REQUIRE(r.code == 0);
    const auto at = r.output.find("\"fid\":");
    REQUIRE(at != std::string::npos);
    return r.output.substr(at, r.output.find(',', at) - at);
  };
  CHECK(fid_at("0") == fid_at("0"));
  CHECK(fid_at("0") != fid_at("1"));
  // A run that measures FID at each evaluation trains as one that does not: the same losses.
  auto train_rows = [&](const std::string& name, const std::string& sets) {
    auto r = test::run(test::zoo_bin() + " train --config " + q(cfg) + " --set train.eval_every=1 --run-dir " +
                       q(dir + "/" + name) + sets);
    INFO(r.output);
    REQUIRE(r.code == 0);
    std::ifstream in(dir + "/" + name + "/metrics.jsonl");
    std::string rows;
    for (std::string line; std::getline(in, line);)
      if (line.find("\"split\":\"train\"") != std::string::npos)
        rows += line.substr(line.find("\"loss\":"), line.find(",\"lr\"") - line.find("\"loss\":")) + "\n";
    return rows;
  };
  const auto plain = train_rows("nofid", "");
  CHECK(plain.size() > 20);
  const auto classifier = " --set eval.fid_samples=16 --set eval.fid_classifier=" + q(dir + "/vit/checkpoints/best.pt");
  CHECK(train_rows("withfid", classifier) == plain);
  // Its last evaluation's FID is what zoo eval gives for its last checkpoint.
  std::string test_row;
  {
    std::ifstream in(dir + "/withfid/metrics.jsonl");
    for (std::string line; std::getline(in, line);)
      if (line.find("\"split\":\"test\"") != std::string::npos) test_row = line;
  }
  auto again = test::run(test::zoo_bin() + " eval --checkpoint " +
                         q(dir + "/withfid/checkpoints/" + zoo::step_checkpoint_name(3)) + " --split test" + classifier);
  INFO(again.output);
  REQUIRE(again.code == 0);
  const auto fid_in = [](const std::string& text) {
    const auto at = text.find("\"fid\":");
    return at == std::string::npos ? std::string("none") : text.substr(at, text.find(',', at) - at);
  };
  CHECK(fid_in(test_row) != "none");
  CHECK(fid_in(again.output) == fid_in(test_row));
  {  // Beside it, an older DDPM run and a newer run of another task: neither is taken.
    namespace fs = std::filesystem;
    fs::create_directories(dir + "/runs/ddpm_old/checkpoints");
    fs::copy_file(ckpt, dir + "/runs/ddpm_old/checkpoints/best.pt");
    fs::last_write_time(dir + "/runs/ddpm_old/checkpoints/best.pt",
                        fs::last_write_time(ckpt) - std::chrono::hours(1));
    fs::create_directories(dir + "/runs/vit_newer/checkpoints");
    fs::copy_file(dir + "/vit/checkpoints/best.pt", dir + "/runs/vit_newer/checkpoints/best.pt");
    fs::last_write_time(dir + "/runs/vit_newer/checkpoints/best.pt", fs::last_write_time(ckpt) + std::chrono::hours(1));
    fs::create_symlink(dir + "/gone.pt", dir + "/runs/ddpm_old/checkpoints/step-00000009.pt");  // a link to nothing
  }
  auto newest = test::run("cd " + q(dir) + " && " + test::zoo_bin() + " sample ddim --steps 2 --n 2 --out c.png");
  CHECK(newest.code == 0);
  CHECK_THAT(newest.output, Contains("using runs/ddpm_tiny/checkpoints/best.pt"));
  {  // A newer DDPM run whose best.pt is damaged: its newest readable checkpoint is taken instead.
    namespace fs = std::filesystem;
    fs::create_directories(dir + "/runs/ddpm_damaged/checkpoints");
    fs::copy_file(ckpt, dir + "/runs/ddpm_damaged/checkpoints/" + zoo::step_checkpoint_name(4));
    std::ofstream(dir + "/runs/ddpm_damaged/checkpoints/best.pt") << "PK\x03\x04 cut short";
  }
  auto damaged = test::run("cd " + q(dir) + " && " + test::zoo_bin() + " sample ddim --steps 2 --n 2 --out d.png");
  INFO(damaged.output);
  CHECK(damaged.code == 0);
  CHECK_THAT(damaged.output, Contains("using runs/ddpm_damaged/checkpoints/" + zoo::step_checkpoint_name(4)));
  // A run that cannot be read at all (a link to itself) is passed over, not an error.
  std::filesystem::create_symlink("self", dir + "/runs/self");
  auto looped = test::run("cd " + q(dir) + " && " + test::zoo_bin() + " sample ddim --steps 2 --n 2 --out e.png");
  INFO(looped.output);
  CHECK(looped.code == 0);
  CHECK_THAT(looped.output, Contains("using runs/ddpm_damaged/checkpoints/" + zoo::step_checkpoint_name(4)));
  auto none = test::run("cd /tmp && mkdir -p " + q(dir + "/empty") + " && cd " + q(dir + "/empty") + " && " + test::zoo_bin() +
                        " sample ddim");
  CHECK(none.code == 2);
  CHECK_THAT(none.output, Contains("zoo train --config configs/ddpm_fashion_mnist.yaml"));
  {  // ... and named when no run is found
    std::filesystem::create_directories(dir + "/unread/runs");
    std::filesystem::create_symlink("self", dir + "/unread/runs/self");
    auto unread = test::run("cd " + q(dir + "/unread") + " && " + test::zoo_bin() + " sample ddim");
    CHECK(unread.code == 2);
    CHECK_THAT(test::last_line(unread.output),
               Contains("no DDPM run with checkpoints under runs/ that can be read (1 run could not be, e.g. runs/self/"
                        "checkpoints/best.pt: Too many levels of symbolic links)"));
  }
  // A checkpoint of another model, a corrupt file, a bad option.
  auto wrong = test::run(test::zoo_bin() + " sample vae --checkpoint " + q(ckpt));
  CHECK(wrong.code == 2);
  CHECK_THAT(wrong.output, Contains("holds a ddpm_fashion_mnist run, not vae"));
  std::ofstream(dir + "/bad.pt") << "PK\x03\x04 garbage";
  auto bad = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(dir + "/bad.pt"));
  CHECK(bad.code == 2);
  CHECK_THAT(bad.output, Contains(dir + "/bad.pt"));
  // --out is written by renaming a new file over it: a link (or a device, a pipe) is refused, not replaced.
  std::filesystem::create_symlink(dir + "/target.png", dir + "/link.png");
  auto link = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --out " + q(dir + "/link.png"));
  CHECK(link.code == 2);
  CHECK_THAT(link.output, Contains("--out " + dir + "/link.png: is not a regular file"));
  auto steps = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --steps 500");
  CHECK(steps.code == 2);
  CHECK_THAT(steps.output, Contains("--steps 500: sample.steps: 500 is more than diffusion.timesteps"));
  // The flags' own bad values are named as given, not as the --set they become; a value given
  // twice, and a seed that sampling would not read, are refused.
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--steps 0", "--steps 0: sample.steps: must be at least 1, got 0"},
           {"--eta 1.0000001", "--eta 1.0000001: sample.eta: must be at most 1, got 1.0000001"},
           {"--spacing even", "--spacing even: sample.spacing: must be one of linspace leading trailing, got 'even'"},
           {"--set sample.eta=1.0000001", "sample.eta: must be at most 1, got 1.0000001"},
           {"--set sample.steps=3 --steps 2", "--set sample.steps=3 and --steps: give the value once"},
           {"--set train.seed=5", "--set train.seed=5: zoo sample draws with --seed (default 0); use --seed"}})
    test::check_refused("sample ddim --checkpoint " + q(ckpt) + " " + args, message);
  // What the flags say is checked before a checkpoint is looked for or read.
  test::check_refused("sample ddim --checkpoint " + q(dir + "/none.pt") + " --eta 2", "--eta 2: sample.eta: must be at most 1");
  test::check_refused("sample ddim --checkpoint " + q(dir + "/none.pt") + " --columns 0", "--columns 0: expected at least 1");
  test::check_refused("sample ddim --checkpoint " + q(dir + "/none.pt") + " --seed -1", "--seed -1: expected a seed of at least 0");
  // The line saying what was written can't be: a failure (the grid itself is written).
  auto full = test::run("{ " + test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --steps 2 --n 1 --out " +
                        q(dir + "/full.png") + " > /dev/full; }");
  CHECK(full.code == 1);
  CHECK_THAT(full.output, Contains("could not write to standard output"));
  // Interpolation: DDIM with eta 0 maps x_T to one image, so a walk between two x_T is a walk
  // between two samples; DDPM and DDIM with eta > 0 draw noise at every step and are refused.
  {
    auto task = load_task(ckpt, {"sample.sampler=ddim", "sample.steps=3", "sample.eta=0"});
    check_interpolation(*task, {2, 1, 28, 28});
  }
  auto walk = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) +
                        " --interpolate 4 --n 2 --steps 3 --eta 0 --out " + q(dir + "/walk.png"));
  INFO(walk.output);
  CHECK(walk.code == 0);
  CHECK_THAT(walk.output, Contains("wrote 2 interpolations of 4 images to " + dir + "/walk.png"));
  CHECK(test::png_size(dir + "/walk.png") == sample_png_size(8, 4));  // 2 rows of 4
  {  // --between: a walk between two real images, whose ends are their DDIM inversions sampled back
     // (the config's spacing; x0 unclipped both ways, whatever sample.clip says)
    auto pair = load_fashion_mnist(test::data_root(), "test", 0, 2).images;
    write_png(dir + "/a.png", pair[0]);
    write_png(dir + "/b.png", pair[1]);
    torch::NoGradGuard no_grad;
    auto task = load_task(ckpt, {"sample.sampler=ddim", "sample.steps=3", "sample.eta=0", "sample.clip=true",
                                 "sample.spacing=trailing"});
    const auto a = read_image_gray(dir + "/a.png", 28), b = read_image_gray(dir + "/b.png", 28);
    auto row = task->interpolate_between(a, b, 4);
    REQUIRE(row.sizes() == torch::IntArrayRef({4, 1, 28, 28}));
    auto children = task->model().named_children();
    auto unet = children["unet"]->as<UNetImpl>();
    auto schedule = children["schedule"]->as<NoiseScheduleImpl>();
    REQUIRE(unet);
    REQUIRE(schedule);
    Denoiser net = [&](const torch::Tensor& x, const torch::Tensor& t) { return unet->forward(x, t); };
    const auto opts = DDIMSamplerOptions().steps(3).eta(0).spacing(Spacing::kTrailing).clip_x0(false);
    for (const auto& [image, at] : {std::pair{a, 0}, std::pair{b, 3}}) {
      auto back = ddim_sample(*schedule, net, ddim_invert(*schedule, net, image * 2 - 1, opts), opts);
      CHECK(torch::allclose(row[at], ((back[0] + 1) / 2).clamp(0, 1), 1e-4, 1e-4));
    }
    CHECK((row[1] - row[0]).abs().max().item<double>() > 1e-6);
    CHECK((row[1] - row[3]).abs().max().item<double>() > 1e-6);
  }
  auto between = test::run(test::zoo_bin() + " sample ddim --checkpoint " + q(ckpt) + " --steps 3 --interpolate 5 --between " +
                           q(dir + "/a.png," + dir + "/b.png") + " --out " + q(dir + "/between.png"));
  INFO(between.output);
  CHECK(between.code == 0);
  CHECK_THAT(between.output, Contains("wrote 1 interpolation of 5 images to " + dir + "/between.png"));
  CHECK(test::png_size(dir + "/between.png") == sample_png_size(5, 5));
  const auto ab = dir + "/a.png," + dir + "/b.png";
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"ddim --between " + q(ab), "--between: goes with --interpolate K"},
           {"ddim --interpolate 3 --between " + q(dir + "/a.png"), "--between: expected two image files, A.png,B.png; got 1"},
           {"ddim --interpolate 3 --between ," + q(dir + "/b.png"), "--between: an empty file name"},
           {"ddim --interpolate 3 --n 2 --between " + q(ab), "--n: with --between there is one row"},
           {"ddim --interpolate 3 --between " + q(dir + "/a.png," + dir + "/none.png"), "none.png"},
           {"ddpm --interpolate 4 --n 2", "--interpolate: DDPM's sampler draws new noise at every step"},
           {"ddim --interpolate 4 --eta 0.5",
            "with eta 0.5 DDIM draws new noise at every step, so x_T does not fix the image; pass --eta 0"},
           {"ddim --interpolate 1", "--interpolate 1: expected 2 to 64 images per row"},
           {"ddim --interpolate 4 --columns 2", "--columns: with --interpolate a row holds one interpolation"},
           {"ddim --interpolate 64 --n 65", "4160 images; at most 4096"}})
    test::check_refused("sample " + args + " --checkpoint " + q(ckpt), message);
  test::check_refused("embed --checkpoint " + q(ckpt) + " --images " + q(dir + "/a.png"),
                      ckpt + ": holds a ddpm_fashion_mnist run, which zoo embed does not take");
}

TEST_CASE("zoo embed: ViT and VAE vectors of PNG files are what the models compute, wrong inputs exit 2, VAE walks", "[cli][embed]") {
  auto dir = test::scratch("embed");
  std::ofstream(dir + "/vit.yaml") << test::tiny_vit_yaml(2);
  std::ofstream(dir + "/gan.yaml") << "task: gan_fashion_mnist\n"
                                      "model: {latent_dim: 6, generator_features: 16, discriminator_features: 8}\n"
                                      "data: {root: " + test::yaml_str(test::data_root()) + ", train_limit: 256, eval_limit: 64}\n"
                                      "train: {device: cpu, threads: 1, batch_size: 16, steps: 20, log_every: 5, "
                                      "eval_every: 0}\n";
  std::ofstream(dir + "/vae.yaml") << "task: vae_fashion_mnist\n"
                                      "model: {hidden_dim: 32, latent_dim: 5}\n"
                                      "data: {root: " + test::yaml_str(test::data_root()) + ", train_limit: 256, eval_limit: 64}\n"
                                      "eval: {iw_samples: 10, iw_images: 8}\n"
                                      "train: {device: cpu, threads: 1, batch_size: 16, steps: 3, log_every: 1, "
                                      "eval_every: 0, ema: true, ema_decay: 0.5}\n";
  for (const char* name : {"vit", "vae", "gan"}) {
    auto r = test::run(test::zoo_bin() + " train --config " + q(dir + "/" + name + ".yaml") + " --run-dir " + q(dir + "/" + name));
    INFO(r.output);
    REQUIRE(r.code == 0);
  }
  {  // A GAN (no metric to pick by: best.pt is the last weights) resumed past its end: best.pt
     // moves to the new last step.
    // cp, not std::filesystem::copy: a LibTorch 2.x libtorch.so exports std::filesystem code of its
    // own that the dynamic linker may pick (README, Building: remove_all crashed under torch 2.11).
    REQUIRE(test::run("cp -R " + q(dir + "/gan") + " " + q(dir + "/gan-more")).code == 0);
    auto r = test::run(test::zoo_bin() + " train --config " + q(dir + "/gan.yaml") + " --run-dir " + q(dir + "/gan-more") +
                       " --resume --set train.steps=24");
    INFO(r.output);
    REQUIRE(r.code == 0);
    auto bytes = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    const auto ckpts = dir + "/gan-more/checkpoints/";
    REQUIRE(std::filesystem::exists(ckpts + step_checkpoint_name(24)));
    CHECK(bytes(ckpts + "best.pt") == bytes(ckpts + step_checkpoint_name(24)));
  }
  const auto vit = dir + "/vit/checkpoints/best.pt", vae = dir + "/vae/checkpoints/best.pt";
  // Three test images as PNG files: 8-bit, so they read back as they were.
  auto images = load_fashion_mnist(test::data_root(), "test", 0, 3).images;
  std::string files;
  for (int64_t i = 0; i < 3; ++i) {
    write_png(dir + "/" + std::to_string(i) + ".png", images[i]);
    files += " " + q(dir + "/" + std::to_string(i) + ".png");
  }
  std::ofstream(dir + "/nul.txt", std::ios::binary) << dir + "/0.png" + std::string(1, '\0') + "junk\n";
  // ViT: the [CLS] features FID reads (train/fid.cpp's own code path), of the EMA weights.
  auto got = test::run(test::zoo_bin() + " embed --checkpoint " + q(vit) + files);
  INFO(got.output);
  REQUIRE(got.code == 0);
  auto rows = test::embedding_rows(got.output);
  REQUIRE(rows.defined());
  REQUIRE(rows.sizes() == torch::IntArrayRef({3, 32}));
  CHECK(torch::allclose(rows, FeatureExtractor(vit, torch::kCPU).features(images), 1e-5, 1e-5));
  {  // by the paper's definition: token 0 of the encoder's output (after its final layer norm)
    torch::NoGradGuard no_grad;
    auto task = load_task(vit, {});
    auto* model = task->model().as<ViTImpl>();
    auto x = (images - kFashionMnistMean) / kFashionMnistStd;
    CHECK(torch::allclose(rows, model->encode(model->embed(x)).select(1, 0), 1e-5, 1e-5));
  }
  CHECK_FALSE(torch::allclose(rows[0], rows[1], 1e-3, 1e-3));  // different images, different vectors
  // The same from standard input, one file a line, and with --images said.
  auto piped = test::run("printf '%s\\n'" + files + " | " + test::zoo_bin() + " embed --images --checkpoint " + q(vit));
  REQUIRE(piped.code == 0);
  CHECK(test::embedding_rows(piped.output).equal(rows));
  // VAE: the mean of q(z|x).
  got = test::run(test::zoo_bin() + " embed --checkpoint " + q(vae) + files);
  INFO(got.output);
  REQUIRE(got.code == 0);
  rows = test::embedding_rows(got.output);
  REQUIRE(rows.defined());
  REQUIRE(rows.sizes() == torch::IntArrayRef({3, 5}));
  {
    torch::NoGradGuard no_grad;
    auto task = load_task(vae, {});
    CHECK(torch::allclose(rows, task->model().as<VAEImpl>()->encode(images).first, 1e-5, 1e-5));
    check_interpolation(*task, {2, 5});  // and a walk between two draws of z
  }
  {  // DCGAN: a walk between two draws of z, through a generator with batch norm (eval mode)
    torch::NoGradGuard no_grad;
    auto task = load_task(dir + "/gan/checkpoints/best.pt", {});
    check_interpolation(*task, {2, 6});
  }
  auto walk = test::run(test::zoo_bin() + " sample vae --checkpoint " + q(vae) + " --interpolate 3 --n 1 --out " +
                        q(dir + "/walk.png"));
  INFO(walk.output);
  CHECK(walk.code == 0);
  CHECK_THAT(walk.output, Contains("wrote 1 interpolation of 3 images"));
  {  // --between: the VAE's row runs from one image's mean code to another's, decoded
    torch::NoGradGuard no_grad;
    auto task = load_task(vae, {});
    const auto a = read_image_gray(dir + "/0.png", 28), b = read_image_gray(dir + "/1.png", 28);
    auto row = task->interpolate_between(a, b, 3);
    REQUIRE(row.sizes() == torch::IntArrayRef({3, 1, 28, 28}));
    auto vae_model = task->model().as<VAEImpl>();
    CHECK(torch::allclose(row[0], torch::sigmoid(vae_model->decode(vae_model->encode(a).first)).view({1, 28, 28}), 1e-5, 1e-5));
    CHECK(torch::allclose(row[2], torch::sigmoid(vae_model->decode(vae_model->encode(b).first)).view({1, 28, 28}), 1e-5, 1e-5));
    // The same image at both ends: the walk stays on its reconstruction.
    auto still = task->interpolate_between(a, a, 3);
    CHECK(torch::allclose(still[1], still[0], 1e-5, 1e-5));
  }
  test::check_refused("sample gan --checkpoint " + q(dir + "/gan/checkpoints/best.pt") + " --interpolate 3 --between " +
                          q(dir + "/0.png," + dir + "/1.png"),
                      "--between: this model has no encoder");
  // Wrong inputs: texts to an image model, a file that is not an image, no inputs, both kinds.
  test::check_refused("embed --checkpoint " + q(vit) + " --texts 'a shoe'",
                      "a vit_fashion_mnist model embeds images, not texts; drop --texts");
  std::ofstream(dir + "/notes.txt") << "hello";
  test::check_refused("embed --checkpoint " + q(vae) + " " + q(dir + "/notes.txt"), "notes.txt: not an image");
  test::check_refused("embed --checkpoint " + q(vit) + " < /dev/null", "zoo embed: no inputs given");
  test::check_refused("embed --checkpoint " + q(vit) + " < " + q(dir + "/nul.txt"),
                      "zoo embed: input 1 holds a NUL byte, which no file name has; give one image file a line");
  auto empty_line = test::run("printf '\\n' | " + test::zoo_bin() + " embed --checkpoint " + q(vit));
  CHECK(empty_line.code == 2);
  CHECK_THAT(empty_line.output, Contains("zoo embed: input 1 is an empty file name (an empty argument or line)"));
  test::check_refused("embed --checkpoint " + q(vit) + " < /dev/zero",
                      "a line on standard input runs to 1000000 characters or more");
  test::check_refused("embed --checkpoint " + q(vit) + " " + q(dir + "/0.png") + " ''",
                      "zoo embed: input 2 is an empty file name (an empty argument or line)");
  {  // a small file whose header declares a 20,000 x 20,000 image (a 54-byte BMP header)
    std::string bmp(54, '\0');
    auto put = [&](size_t at, uint32_t v) {
      for (int b = 0; b < 4; ++b) bmp[at + b] = static_cast<char>((v >> (8 * b)) & 0xff);
    };
    bmp[0] = 'B', bmp[1] = 'M';
    put(2, 54 + 3u * 20000u * 20000u), put(10, 54), put(14, 40), put(18, 20000), put(22, 20000);
    bmp[26] = 1, bmp[28] = 24;  // one plane, 24 bits a pixel
    std::ofstream(dir + "/huge.bmp", std::ios::binary) << bmp;
  }
  test::check_refused("embed --checkpoint " + q(vit) + " " + q(dir + "/huge.bmp"),
                      "huge.bmp: 20000x20000 pixels, more than the 64 million read here");
  // Vectors that can't be written are a failure, not a success.
  auto full = test::run("{ " + test::zoo_bin() + " embed --checkpoint " + q(vit) + files + " > /dev/full; }");
  CHECK(full.code == 1);
  CHECK_THAT(full.output, Contains("could not write to standard output"));
  test::check_refused("sample vae --checkpoint " + q(vae) + " --n 2 --out " + q(dir + "/grid.jpg"),
                      "grid.jpg: zoo sample writes a PNG file; give a name that ends in .png");
  test::check_refused("sample vae --checkpoint " + q(vae) + " --n 2 --out " + q(dir + "/grid"),
                      "grid: zoo sample writes a PNG file; give a name that ends in .png");
  CHECK(test::run(test::zoo_bin() + " sample vae --checkpoint " + q(vae) + " --n 2 --out " + q(dir + "/GRID.PNG")).code == 0);
  CHECK(std::filesystem::file_size(dir + "/GRID.PNG") > 100);
  test::check_refused("embed --checkpoint " + q(vit) + " --images --texts x", "give --images or --texts, not both");
}

TEST_CASE("FID: Gaussians with known moments, symmetry, zero for the same set", "[fid]") {
  torch::manual_seed(10);
  const int64_t n = 200000;
  auto mu_a = torch::tensor({0.0, 1.0, -2.0}), mu_b = torch::tensor({0.5, 1.0, -1.0});
  auto s_a = torch::tensor({1.0, 2.0, 0.5}), s_b = torch::tensor({1.5, 1.0, 0.5});
  auto a = mu_a + s_a * torch::randn({n, 3}), b = mu_b + s_b * torch::randn({n, 3});
  // Diagonal covariances commute: FID = |mu_a - mu_b|^2 + sum (s_a - s_b)^2 = 1.25 + 1.25.
  CHECK(frechet_distance(a, b) == Approx(2.5).margin(0.05));
  CHECK(frechet_distance(a, b) == Approx(frechet_distance(b, a)).epsilon(1e-6));
  CHECK(frechet_distance(a, a) == Approx(0.0).margin(1e-6));
  // A rotated covariance: the distance is invariant to rotating both sets together.
  auto q = std::get<0>(torch::linalg_qr(torch::randn({3, 3})));
  CHECK(frechet_distance(a.mm(q), b.mm(q)) == Approx(frechet_distance(a, b)).epsilon(1e-4));
}
