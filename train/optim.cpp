#include "train/optim.h"

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>

namespace zoo {
namespace {

// torch::optim keys its state by the parameter's TensorImpl: as a printed pointer in
// LibTorch 1.x, as the pointer itself in 2.x.
template <class StateMap>
typename StateMap::key_type state_key(const StateMap&, const torch::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// The parameters of one group that take this step, with their gradients and moments, by the
// step count they reach (one bucket unless some parameters had no gradient at some step).
struct Bucket {
  std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq;
};

// One Adam or AdamW step of `opt` (Options/State: torch::optim's AdamOptions/AdamParamState or
// AdamWOptions/AdamWParamState). `decoupled`: AdamW's weight decay, else Adam's L2 term.
template <class Options, class State>
void adam_step(torch::optim::Optimizer& opt, bool decoupled) {
  torch::NoGradGuard no_grad;
  auto& state = opt.state();
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<Options&>(group.options());
    TORCH_CHECK(!o.amsgrad(), "zoo's multi-tensor Adam has no amsgrad");
    const double lr = o.lr(), wd = o.weight_decay(), eps = o.eps();
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    std::map<int64_t, Bucket> buckets;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "zoo's multi-tensor Adam takes no sparse gradients");
      const auto key = state_key(state, p);
      auto it = state.find(key);
      if (it == state.end()) {
        auto s = std::make_unique<State>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state.emplace(key, std::move(s)).first;
      }
      auto& s = static_cast<State&>(*it->second);
      s.step(s.step() + 1);
      auto& b = buckets[s.step()];
      b.params.push_back(p);
      b.grads.push_back(p.grad());
      b.exp_avg.push_back(s.exp_avg());
      b.exp_avg_sq.push_back(s.exp_avg_sq());
    }
    for (auto& [step, b] : buckets) {
      const double bias_correction1 = 1 - std::pow(beta1, step);
      const double bias_correction2 = 1 - std::pow(beta2, step);
      auto grads = b.grads;
      if (wd != 0) {
        if (decoupled) at::_foreach_mul_(b.params, 1 - lr * wd);  // p <- p (1 - lr wd), before the update
        else grads = at::_foreach_add(b.grads, b.params, wd);     // g <- g + wd p
      }
      at::_foreach_mul_(b.exp_avg, beta1);  // m <- beta1 m + (1 - beta1) g
      at::_foreach_add_(b.exp_avg, grads, 1 - beta1);
      at::_foreach_mul_(b.exp_avg_sq, beta2);  // v <- beta2 v + (1 - beta2) g^2
      at::_foreach_addcmul_(b.exp_avg_sq, grads, grads, 1 - beta2);
      auto denom = at::_foreach_sqrt(b.exp_avg_sq);  // sqrt(v) / sqrt(1 - beta2^t) + eps
      at::_foreach_div_(denom, std::sqrt(bias_correction2));
      at::_foreach_add_(denom, eps);
      at::_foreach_addcdiv_(b.params, b.exp_avg, denom, -lr / bias_correction1);
    }
  }
}

// torch::optim's step protocol: the closure, if any, recomputes the loss with gradients on.
template <class Update>
torch::Tensor step_after(const torch::optim::Optimizer::LossClosure& closure, Update update) {
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  update();
  return loss;
}

}  // namespace

torch::Tensor MultiTensorAdamW::step(LossClosure closure) {
  return step_after(closure, [this] {
    adam_step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*this, /*decoupled=*/true);
  });
}

torch::Tensor MultiTensorAdam::step(LossClosure closure) {
  return step_after(closure, [this] {
    adam_step<torch::optim::AdamOptions, torch::optim::AdamParamState>(*this, /*decoupled=*/false);
  });
}

namespace {

// `Opt` over `decayed` with `options`, and over `plain` (when there are any) with the same
// options but no weight decay: a second parameter group. Its options are set once the optimizer
// is built, since newer LibTorch (pytorch#165182, October 2025) merges a group's options into the
// optimizer's in add_param_group, keeping only the fields that differ from a default-constructed
// options object: Adam's and SGD's weight decay of 0, their default, became the optimizer's.
template <class Opt, class Options>
std::unique_ptr<torch::optim::Optimizer> with_groups(std::vector<torch::Tensor> decayed, std::vector<torch::Tensor> plain,
                                                     const Options& options) {
  const bool two = !plain.empty();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::move(decayed), std::make_unique<Options>(options));
  if (two) groups.emplace_back(std::move(plain), std::make_unique<Options>(options));
  auto opt = std::make_unique<Opt>(std::move(groups), options);
  if (two) {
    auto no_decay = std::make_unique<Options>(options);
    no_decay->weight_decay(0);
    opt->param_groups()[1].set_options(std::move(no_decay));
  }
  return opt;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Config& cfg, std::vector<torch::Tensor> params) {
  const auto name = cfg.get_string("optim.name");
  const double lr = cfg.get_float("optim.lr"), wd = cfg.get_float("optim.weight_decay");
  const auto betas = std::make_tuple(cfg.get_float("optim.beta1"), cfg.get_float("optim.beta2"));
  // optim.decay_1d false: weight decay acts on parameters of 2+ dimensions only, not on biases,
  // norm gains or scalars such as CLIP's temperature (nanoGPT's rule; CLIP Sec. 2.5).
  std::vector<torch::Tensor> decayed, plain;
  for (auto& p : params) (cfg.get_bool("optim.decay_1d") || p.dim() >= 2 ? decayed : plain).push_back(p);
  if (name == "adamw")
    return with_groups<MultiTensorAdamW>(
        decayed, plain, torch::optim::AdamWOptions(lr).betas(betas).eps(cfg.get_float("optim.eps")).weight_decay(wd));
  if (name == "adam")
    return with_groups<MultiTensorAdam>(
        decayed, plain, torch::optim::AdamOptions(lr).betas(betas).eps(cfg.get_float("optim.eps")).weight_decay(wd));
  return with_groups<torch::optim::SGD>(
      decayed, plain, torch::optim::SGDOptions(lr).momentum(cfg.get_float("optim.momentum")).weight_decay(wd));
}

void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return;
  // The same arithmetic as torch::nn::utils::clip_grad_norm_: the norm of the per-tensor norms,
  // and coefficient min(1, max_norm / (norm + 1e-6)), which stays on the device.
  auto norms = at::_foreach_norm(grads, 2);
  auto total = norms.size() == 1 ? norms.front() : torch::stack(norms).norm(2);
  auto coef = torch::clamp_max(max_norm / (total + 1e-6), 1.0);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  at::_foreach_mul_(grads, coef);
#else
  for (auto& g : grads) g.mul_(coef);
#endif
}

std::string optimizer_state_mismatch(torch::optim::Optimizer& opt) {
  auto& states = opt.state();
  int64_t index = 0;
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      ++index;
      const auto it = states.find(state_key(states, p));
      if (it == states.end()) continue;
      std::vector<torch::Tensor> state, squares;  // squares: Adam's second moments, never negative
      int64_t step = 0;
      if (auto* s = dynamic_cast<torch::optim::AdamParamState*>(it->second.get())) {
        state = {s->exp_avg(), s->exp_avg_sq(), s->max_exp_avg_sq()};
        squares = {s->exp_avg_sq(), s->max_exp_avg_sq()};
        step = s->step();
      } else if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        state = {s->exp_avg(), s->exp_avg_sq(), s->max_exp_avg_sq()};
        squares = {s->exp_avg_sq(), s->max_exp_avg_sq()};
        step = s->step();
      } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        state = {s->momentum_buffer()};
      }
      const auto which = "the state of parameter " + std::to_string(index);
      for (const auto& t : state)
        if (t.defined() && t.sizes() != p.sizes()) {
          std::ostringstream os;
          os << which << " has shape " << t.sizes() << ", not its " << p.sizes();
          return os.str();
        }
      // Values no run leaves, which the first step would follow: to NaN weights (and "training
      // diverged"), or a division by zero in Adam's bias correction.
      if (step < 0) return which + " has a negative step count (" + std::to_string(step) + ")";
      for (const auto& t : state)
        if (t.defined() && t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
          return which + " holds NaN or infinite values";
      for (const auto& t : squares)
        if (t.defined() && t.numel() > 0 && t.min().item<double>() < 0) return which + " has negative second moments";
    }
  return "";
}

}  // namespace zoo
