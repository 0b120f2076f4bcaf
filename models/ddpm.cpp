#include "models/ddpm.h"

#include <cmath>

namespace zoo {

Prediction parse_prediction(const std::string& name) {
  if (name == "epsilon") return Prediction::kEpsilon;
  if (name == "v") return Prediction::kV;
  if (name == "x0") return Prediction::kX0;
  TORCH_CHECK(false, "unknown prediction '", name, "' (epsilon, v or x0)");
}

NoiseScheduleImpl::NoiseScheduleImpl(const NoiseScheduleOptions& options_) : options(options_) { reset(); }

void NoiseScheduleImpl::reset() {
  const auto T = options.timesteps();
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor b;
  if (options.kind() == "linear") {
    // beta_1 = 0 would give the posterior at t = 1 a variance of 0 (its log -inf); beta = 1 an alpha of 0.
    TORCH_CHECK(options.beta_start() > 0 && options.beta_start() < 1 && options.beta_end() > 0 && options.beta_end() < 1,
                "linear noise schedule: need betas between 0 and 1 (exclusive), got ", options.beta_start(), " and ",
                options.beta_end());
    b = torch::linspace(options.beta_start(), options.beta_end(), T, f64);
  } else if (options.kind() == "cosine") {
    // alpha-bar(t) = f(t) / f(0), f(t) = cos^2(((t / T + s) / (1 + s)) pi / 2), s = 0.008 (Nichol and Dhariwal, Eq. 17)
    const double s = 0.008;
    auto steps = torch::arange(T + 1, f64) / static_cast<double>(T);
    auto f = torch::cos((steps + s) / (1 + s) * M_PI / 2).pow(2);
    auto ab = f / f[0];
    b = (1 - ab.slice(0, 1) / ab.slice(0, 0, T)).clamp_max(0.999);
  } else {
    TORCH_CHECK(false, "unknown noise schedule '", options.kind(), "' (linear or cosine)");
  }
  auto ab = torch::cumprod(1 - b, 0);
  auto ab_prev = torch::cat({torch::ones({1}, f64), ab.slice(0, 0, T - 1)});
  betas = register_buffer("betas", b);
  alphas_cumprod = register_buffer("alphas_cumprod", ab);
  alphas_cumprod_prev = register_buffer("alphas_cumprod_prev", ab_prev);
  posterior_variance = register_buffer("posterior_variance", b * (1 - ab_prev) / (1 - ab));  // beta-tilde, Eq. 7
}

void NoiseScheduleImpl::to(torch::Device device, torch::Dtype, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
}
void NoiseScheduleImpl::to(torch::Dtype, bool) {}
void NoiseScheduleImpl::to(torch::Device device, bool non_blocking) { torch::nn::Module::to(device, non_blocking); }

torch::Tensor NoiseScheduleImpl::alpha_bar(const torch::Tensor& t, const torch::Tensor& like) const {
  auto tt = t.to(alphas_cumprod.device(), torch::kLong);
  auto ab = torch::where(tt >= 0, alphas_cumprod.index_select(0, tt.clamp_min(0)), torch::ones_like(tt, alphas_cumprod.options()));
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = -1;
  return ab.view(shape).to(like.device(), like.scalar_type());
}

torch::Tensor NoiseScheduleImpl::q_sample(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const {
  auto ab = alpha_bar(t, x0);
  return ab.sqrt() * x0 + (1 - ab).sqrt() * noise;
}

torch::Tensor NoiseScheduleImpl::target(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                                        Prediction prediction) const {
  switch (prediction) {
    case Prediction::kEpsilon: return noise;
    case Prediction::kX0: return x0;
    case Prediction::kV: {
      auto ab = alpha_bar(t, x0);
      return ab.sqrt() * noise - (1 - ab).sqrt() * x0;
    }
  }
  return noise;
}

torch::Tensor NoiseScheduleImpl::predict_x0(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& out,
                                            Prediction prediction) const {
  auto ab = alpha_bar(t, x_t);
  switch (prediction) {
    case Prediction::kEpsilon: return (x_t - (1 - ab).sqrt() * out) / ab.sqrt();  // Eq. 15 inverted
    case Prediction::kX0: return out;
    case Prediction::kV: return ab.sqrt() * x_t - (1 - ab).sqrt() * out;
  }
  return out;
}

torch::Tensor NoiseScheduleImpl::predict_eps(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& out,
                                             Prediction prediction) const {
  auto ab = alpha_bar(t, x_t);
  switch (prediction) {
    case Prediction::kEpsilon: return out;
    case Prediction::kX0: return (x_t - ab.sqrt() * out) / (1 - ab).sqrt();
    case Prediction::kV: return (1 - ab).sqrt() * x_t + ab.sqrt() * out;
  }
  return out;
}

namespace {

// The step with its schedule values already on the host: a sampling loop reads them once per
// call, not with a device-to-host copy (a synchronization on CUDA) at every step.
StepOutput ddpm_step_with(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t,
                          const torch::Tensor& x_t, const torch::Tensor& noise, const DDPMSamplerOptions& options,
                          double beta, double ab, double ab_prev, double var_tilde) {
  auto tt = torch::full({x_t.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(x_t.device()));
  auto x0 = schedule.predict_x0(x_t, tt, model_out, options.prediction());
  if (options.clip_x0()) x0 = x0.clamp(-1, 1);
  // Posterior mean (Eq. 7): beta_t sqrt(ab_{t-1}) / (1 - ab_t) x0 + (1 - ab_{t-1}) sqrt(alpha_t) / (1 - ab_t) x_t
  auto mean = (beta * std::sqrt(ab_prev) / (1 - ab)) * x0 + ((1 - ab_prev) * std::sqrt(1 - beta) / (1 - ab)) * x_t;
  if (t == 0) return {mean, x0};
  const double var = options.variance_beta() ? beta : var_tilde;
  return {mean + std::sqrt(var) * noise, x0};
}

}  // namespace

StepOutput ddpm_step(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t,
                     const torch::Tensor& x_t, const torch::Tensor& noise, const DDPMSamplerOptions& options) {
  const double var_tilde = t > 0 && !options.variance_beta() ? schedule.posterior_variance[t].item<double>() : 0.0;
  return ddpm_step_with(schedule, model_out, t, x_t, noise, options, schedule.betas[t].item<double>(),
                        schedule.alphas_cumprod[t].item<double>(), schedule.alphas_cumprod_prev[t].item<double>(),
                        var_tilde);
}

torch::Tensor ddpm_sample(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x,
                          const DDPMSamplerOptions& options, const Progress& progress) {
  torch::NoGradGuard no_grad;  // inference: no graph over the steps
  const auto T = schedule.timesteps();
  // The schedule on the host, once: (4, T) rows betas, alpha-bar, alpha-bar_prev, beta-tilde.
  const auto host = torch::stack({schedule.betas, schedule.alphas_cumprod, schedule.alphas_cumprod_prev,
                                  schedule.posterior_variance})
                        .to(torch::kCPU, torch::kFloat64)
                        .contiguous();
  TORCH_CHECK(host.size(1) == T, "noise schedule: ", host.size(1), " steps in its buffers, ", T, " in its options");
  const auto v = host.accessor<double, 2>();
  for (int64_t t = T - 1; t >= 0; --t) {
    auto tt = torch::full({x.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    auto out = denoiser(x, tt);
    auto noise = t > 0 ? torch::randn_like(x) : torch::Tensor();
    x = ddpm_step_with(schedule, out, t, x, noise, options, v[0][t], v[1][t], v[2][t], v[3][t]).prev_sample;
    if (progress) progress(T - t, T);
  }
  return x;
}

}  // namespace zoo
