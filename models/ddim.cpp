#include "models/ddim.h"

#include <cmath>

namespace zoo {

Spacing parse_spacing(const std::string& name) {
  if (name == "linspace") return Spacing::kLinspace;
  if (name == "leading") return Spacing::kLeading;
  if (name == "trailing") return Spacing::kTrailing;
  TORCH_CHECK(false, "unknown timestep spacing '", name, "' (linspace, leading or trailing)");
}

std::vector<int64_t> ddim_timesteps(int64_t T, int64_t S, Spacing spacing) {
  TORCH_CHECK(S >= 1 && S <= T, "DDIM steps must be in [1, ", T, "], got ", S);
  std::vector<int64_t> ts;
  for (int64_t i = 0; i < S; ++i) {
    switch (spacing) {
      case Spacing::kLinspace:
        ts.push_back(S == 1 ? 0 : std::llround(static_cast<double>(i) * static_cast<double>(T - 1) / static_cast<double>(S - 1)));
        break;
      case Spacing::kLeading:
        ts.push_back(i * (T / S));
        break;
      case Spacing::kTrailing:
        ts.push_back(std::llround(static_cast<double>(T) - static_cast<double>(i) * static_cast<double>(T) / static_cast<double>(S)) - 1);
        break;
    }
  }
  std::sort(ts.begin(), ts.end(), std::greater<>());
  return ts;
}

namespace {

// The step with alpha-bar at t and t_prev already on the host (see ddpm_step_with).
StepOutput ddim_step_with(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t,
                          const torch::Tensor& x_t, const torch::Tensor& noise, double eta, Prediction prediction,
                          bool clip_x0, double ab, double ab_prev) {
  auto tt = torch::full({x_t.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(x_t.device()));
  auto x0 = schedule.predict_x0(x_t, tt, model_out, prediction);
  if (clip_x0) x0 = x0.clamp(-1, 1);
  // With clipping, eps is re-derived from the clipped x0 so that both still describe x_t (Eq. 12).
  auto eps = clip_x0 ? (x_t - std::sqrt(ab) * x0) / std::sqrt(1 - ab) : schedule.predict_eps(x_t, tt, model_out, prediction);
  const double sigma = eta * std::sqrt((1 - ab_prev) / (1 - ab)) * std::sqrt(1 - ab / ab_prev);
  auto prev = std::sqrt(ab_prev) * x0 + std::sqrt(std::max(0.0, 1 - ab_prev - sigma * sigma)) * eps;
  if (sigma > 0) prev = prev + sigma * noise;
  return {prev, x0};
}

// alpha-bar on the host, once per sampling call; index -1 (before the first step) gives 1.
struct HostAlphaBar {
  explicit HostAlphaBar(const NoiseScheduleImpl& schedule)
      : values(schedule.alphas_cumprod.to(torch::kCPU, torch::kFloat64).contiguous()), v(values.accessor<double, 1>()) {
    TORCH_CHECK(values.size(0) == schedule.timesteps(), "noise schedule: ", values.size(0), " steps in alphas_cumprod, ",
                schedule.timesteps(), " in its options");
  }
  double operator()(int64_t t) const { return t >= 0 ? v[t] : 1.0; }
  torch::Tensor values;
  torch::TensorAccessor<double, 1> v;
};

}  // namespace

StepOutput ddim_step(const NoiseScheduleImpl& schedule, const torch::Tensor& model_out, int64_t t, int64_t t_prev,
                     const torch::Tensor& x_t, const torch::Tensor& noise, double eta, Prediction prediction,
                     bool clip_x0) {
  const double ab = schedule.alphas_cumprod[t].item<double>();
  const double ab_prev = t_prev >= 0 ? schedule.alphas_cumprod[t_prev].item<double>() : 1.0;
  return ddim_step_with(schedule, model_out, t, x_t, noise, eta, prediction, clip_x0, ab, ab_prev);
}

torch::Tensor ddim_sample(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x,
                          const DDIMSamplerOptions& options, const Progress& progress) {
  torch::NoGradGuard no_grad;  // inference: no graph over the steps
  const auto ts = ddim_timesteps(schedule.timesteps(), options.steps(), options.spacing());
  const HostAlphaBar ab(schedule);
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto t = ts[i];
    const auto t_prev = i + 1 < ts.size() ? ts[i + 1] : -1;
    auto tt = torch::full({x.size(0)}, t, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    auto out = denoiser(x, tt);
    auto noise = options.eta() > 0 ? torch::randn_like(x) : torch::Tensor();
    x = ddim_step_with(schedule, out, t, x, noise, options.eta(), options.prediction(), options.clip_x0(), ab(t), ab(t_prev))
            .prev_sample;
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(ts.size()));
  }
  return x;
}

torch::Tensor ddim_invert(const NoiseScheduleImpl& schedule, const Denoiser& denoiser, torch::Tensor x,
                          const DDIMSamplerOptions& options, const Progress& progress) {
  torch::NoGradGuard no_grad;  // inference: no graph over the steps
  auto ts = ddim_timesteps(schedule.timesteps(), options.steps(), options.spacing());
  std::reverse(ts.begin(), ts.end());  // ascending
  const HostAlphaBar ab(schedule);
  // x_{t_next} = sqrt(ab_next) x0(x_t) + sqrt(1 - ab_next) eps(x_t): Eq. 12 with eta = 0, run forwards in t,
  // with eps evaluated at the current (less noisy) point.
  int64_t t_cur = -1;
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto t_next = ts[i];
    const auto t_eval = t_cur >= 0 ? t_cur : t_next;  // the first step has no t_cur: use t_next's prediction
    auto tt = torch::full({x.size(0)}, t_eval, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
    auto out = denoiser(x, tt);
    auto eps = schedule.predict_eps(x, tt, out, options.prediction());
    const double ab_cur = ab(t_cur), ab_next = ab(t_next);
    auto x0 = (x - std::sqrt(1 - ab_cur) * eps) / std::sqrt(ab_cur);
    x = std::sqrt(ab_next) * x0 + std::sqrt(1 - ab_next) * eps;
    t_cur = t_next;
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(ts.size()));
  }
  return x;
}

torch::Tensor slerp(const torch::Tensor& x1, const torch::Tensor& x2, double alpha) {
  auto a = x1.flatten(1), b = x2.flatten(1);
  auto cos = (a * b).sum(1) / (a.norm(2, 1) * b.norm(2, 1)).clamp_min(1e-30);  // a zero vector: orthogonal
  auto theta = torch::acos(cos.clamp(-1, 1)).view({-1, 1});
  auto s = torch::sin(theta);
  auto out = torch::sin((1 - alpha) * theta) / s.clamp_min(1e-8) * a + torch::sin(alpha * theta) / s.clamp_min(1e-8) * b;
  // (Nearly) parallel endpoints, e.g. the same one twice: the great circle is the straight line.
  out = torch::where(s < 1e-6, (1 - alpha) * a + alpha * b, out);
  return out.view_as(x1);
}

}  // namespace zoo
