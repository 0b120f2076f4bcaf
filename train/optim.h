// The optimizers the trainer makes, and gradient clipping, with multi-tensor kernels.
//
// torch::optim's Adam and AdamW update one parameter at a time, about eight kernels each: on
// a GPU a small model's step is then bound by kernel launches (the ViT's 80 parameters cost
// some 640 launches a step, more than its forward pass). These update every parameter of a
// group with a handful of multi-tensor (_foreach) kernels. They are torch::optim's classes with
// only step() replaced, so their options, state and checkpoints are torch::optim's, and they do
// the same arithmetic in the same order: on CPU, where a multi-tensor kernel is a loop over
// the tensors, the results are torch::optim's bit for bit ([optim] test).
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "train/config.h"

namespace zoo {

/// AdamW (Loshchilov and Hutter 2019), decoupled weight decay, as torch::optim::AdamW.
class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

/// Adam (Kingma and Ba 2015), weight decay as an L2 term in the gradient, as torch::optim::Adam.
class MultiTensorAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

/// The optimizer the config's optim.* keys name, over `params`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Config& cfg, std::vector<torch::Tensor> params);

/// "" when each tensor of the optimizer's state (Adam's and AdamW's moments, SGD's momentum) has
/// its parameter's shape, else which differs. Optimizer::load takes any shapes (a damaged file's,
/// its CRCs intact), and the first step would fail; --resume refuses such a file, naming it.
std::string optimizer_state_mismatch(torch::optim::Optimizer& opt);

/// Scales the gradients of `params` so that their global L2 norm is at most `max_norm`, as
/// torch::nn::utils::clip_grad_norm_ does, but without reading the norm back to the host (which
/// makes the CPU wait for the GPU every step) and, on CUDA, with multi-tensor kernels.
void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace zoo
