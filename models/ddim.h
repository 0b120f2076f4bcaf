// Denoising diffusion implicit models: Song et al. 2020. A sampler over a network trained
// with the DDPM objective: S of the T steps, eta in [0, 1] (eta = 1: DDPM's variance,
// eta = 0: deterministic), inversion x0 -> x_T, and spherical interpolation of x_T.
#pragma once

#include <string>
#include <vector>

#include "models/ddpm.h"

namespace zoo {

/// How S timesteps are picked from T (as in diffusers' DDIMScheduler):
/// linspace: round(linspace(0, T - 1, S)); leading: 0, T/S, 2T/S, ...; trailing: T - 1, T - 1 - T/S, ...
/// The paper's linear tau_i = floor(c i) is leading; its quadratic tau_i = floor(c i^2) (Appendix D.2,
/// its CIFAR-10 choice) is not offered.
enum class Spacing { kLinspace, kLeading, kTrailing };
Spacing parse_spacing(const std::string& name);

/// The S timesteps, descending (first one sampled first).
std::vector<int64_t> ddim_timesteps(int64_t T, int64_t S, Spacing spacing);

struct DDIMSamplerOptions {
  /// Sampling steps S.
  TORCH_ARG(int64_t, steps) = 50;
  /// eta: 0 deterministic, 1 the DDPM posterior variance (Eq. 16).
  TORCH_ARG(double, eta) = 0.0;
  TORCH_ARG(Spacing, spacing) = Spacing::kLinspace;
  TORCH_ARG(Prediction, prediction) = Prediction::kEpsilon;
  /// Clip the predicted x0 to [-1, 1].
  TORCH_ARG(bool, clip_x0) = true;
};

/// One step x_t -> x_{t_prev} (t_prev = -1: the last step, to alpha-bar = 1). Eq. 12:
/// x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
/// sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)  (Eq. 16).
/// Reads alpha-bar with .item() (a wait for the device on CUDA); the samplers read it once per call.
StepOutput ddim_step(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t, int64_t t_prev,
                     const torch::Tensor& x_t, const torch::Tensor& noise, double eta, Prediction prediction,
                     bool clip_x0);

/// From x_T through S steps to x_0. Runs under NoGradGuard (as ddim_invert and ddpm_sample do):
/// a graph kept over the steps would hold every step's activations.
torch::Tensor ddim_sample(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x_T,
                          const DDIMSamplerOptions& options, const Progress& progress = nullptr);

/// The deterministic (eta = 0) process run backwards: x_0 -> x_T through the same S steps
/// (Sec. 4.3, the ODE view), so that ddim_sample with eta = 0 and clip_x0 false returns close
/// to x_0 (clipping pulls the way back off the way out). x0 in the training range, [-1, 1];
/// options.eta and options.clip_x0 are not used (the inversion is eta = 0, unclipped).
torch::Tensor ddim_invert(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x0,
                          const DDIMSamplerOptions& options, const Progress& progress = nullptr);

/// Spherical interpolation between two x_T (Sec. 5.3): sin((1-a) th) / sin(th) x1 + sin(a th) / sin(th) x2.
torch::Tensor slerp(const torch::Tensor& x1, const torch::Tensor& x2, double alpha);

}  // namespace zoo
