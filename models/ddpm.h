// Denoising diffusion probabilistic models: Ho et al. 2020. The noise schedule, the
// forward process q(x_t | x_0), the training target, and ancestral sampling. The network
// is apart (models/unet.h), so DDPM and DDIM (models/ddim.h) sample the same checkpoint.
#pragma once

#include <functional>
#include <string>

#include <torch/torch.h>

namespace zoo {

/// What the network predicts: the noise (Ho et al.), v = sqrt(ab) eps - sqrt(1 - ab) x0
/// (Salimans and Ho 2022), or x0 itself.
enum class Prediction { kEpsilon, kV, kX0 };
Prediction parse_prediction(const std::string& name);  // "epsilon", "v", "x0"

/// The network as the samplers see it: (x_t (B, ...), t (B) int64) -> prediction. The samplers
/// can't reach the module behind it: put it in eval mode first (zoo::UNet's dropout defaults to
/// 0.1, and a module starts in training mode), or eta = 0 is not deterministic. The samplers'
/// noise (x_T is the caller's) comes from LibTorch's global generator (torch::manual_seed).
using Denoiser = std::function<torch::Tensor(const torch::Tensor& x_t, const torch::Tensor& t)>;
/// Called after each sampling step with (steps done, steps in all).
using Progress = std::function<void(int64_t, int64_t)>;

struct NoiseScheduleOptions {
  /// Diffusion steps T.
  TORCH_ARG(int64_t, timesteps) = 1000;
  /// "linear" (Ho et al.: beta from beta_start to beta_end) or "cosine" (Nichol and Dhariwal 2021).
  TORCH_ARG(std::string, kind) = "linear";
  TORCH_ARG(double, beta_start) = 1e-4;
  TORCH_ARG(double, beta_end) = 0.02;
};

/// Schedule tensors, all (T) float64 buffers: betas, alphas_cumprod (alpha-bar_t),
/// alphas_cumprod_prev (alpha-bar_{t-1}, 1 at t = 0), posterior_variance (beta-tilde_t).
/// Not checked here: an alpha-bar_T below float's smallest normal (1.2e-38; the default linear
/// betas from T = 8,633 on), where x0 = x_t / sqrt(alpha-bar) in float loses its digits and then
/// is inf. zoo train refuses such a schedule; check alphas_cumprod[-1] where you build one.
class NoiseScheduleImpl : public torch::nn::Cloneable<NoiseScheduleImpl> {
 public:
  explicit NoiseScheduleImpl(const NoiseScheduleOptions& options = {});
  void reset() override;
  int64_t timesteps() const { return options.timesteps(); }

  /// alpha-bar at t (B), shaped to broadcast against `like`, in like's dtype. t = -1 gives 1.
  torch::Tensor alpha_bar(const torch::Tensor& t, const torch::Tensor& like) const;
  /// x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps: a sample of q(x_t | x0) (Eq. 4).
  torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const;
  /// The training target for `prediction` (the simple loss is its MSE against the network).
  torch::Tensor target(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& t,
                       Prediction prediction) const;
  /// x0 and eps implied by a network output at (x_t, t).
  torch::Tensor predict_x0(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& out,
                           Prediction prediction) const;
  torch::Tensor predict_eps(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& out,
                            Prediction prediction) const;

  /// The buffers move to a device but stay float64 whatever dtype the schedule (or a module that
  /// holds it) is cast to: in half precision alpha-bar_0 = 0.9999 rounds to 1, and the samplers
  /// would divide by 1 - alpha-bar = 0.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  NoiseScheduleOptions options;
  torch::Tensor betas, alphas_cumprod, alphas_cumprod_prev, posterior_variance;
};
TORCH_MODULE(NoiseSchedule);

struct StepOutput {
  torch::Tensor prev_sample;  // x_{t-1}
  torch::Tensor pred_x0;      // the x0 the step aimed at
};

struct DDPMSamplerOptions {
  /// The network's prediction type.
  TORCH_ARG(Prediction, prediction) = Prediction::kEpsilon;
  /// sigma_t^2 = beta_t (true) or beta-tilde_t (false): the two choices of Ho et al., Sec. 3.2.
  TORCH_ARG(bool, variance_beta) = false;
  /// Clip the predicted x0 to [-1, 1] before forming the posterior mean.
  TORCH_ARG(bool, clip_x0) = true;
};

/// One ancestral step x_t -> x_{t-1} from the posterior q(x_{t-1} | x_t, x0_pred) (Eq. 6-7).
/// `noise` ~ N(0, I) of x_t's shape; unused at t = 0. It reads its schedule values with .item(),
/// which on CUDA waits for the device; ddpm_sample reads the whole schedule once per call instead.
StepOutput ddpm_step(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t,
                     const torch::Tensor& x_t, const torch::Tensor& noise, const DDPMSamplerOptions& options);

/// Algorithm 2: from x_T ~ N(0, I) (given) through all T steps to x_0. Runs under NoGradGuard.
torch::Tensor ddpm_sample(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x_T,
                          const DDPMSamplerOptions& options, const Progress& progress = nullptr);

}  // namespace zoo
