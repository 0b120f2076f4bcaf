// What the trainer needs from a training job. The trainer knows no paper: a task
// owns its model, data and loss; the trainer owns optimizers, schedules, precision,
// EMA, checkpoints and logging (the split of minGPT's trainer).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/common/eval_mode.h"
#include "train/config.h"

namespace zoo {

/// f() with gradients off and `module` in eval mode (no dropout), its mode put back after, also
/// when f throws.
template <class F>
auto in_eval_mode(torch::nn::Module& module, F&& f) {
  EvalModeGuard eval_mode(module);
  torch::NoGradGuard no_grad;
  return f();
}

/// f(begin, end) for each batch of at most `size` of n items, its (b, D) results concatenated:
/// (n, D), or (0, width) when n is 0.
template <class F>
torch::Tensor in_batches(int64_t n, int64_t size, int64_t width, F&& f) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; i += size) out.push_back(f(i, std::min(n, i + size)));
  return out.empty() ? torch::zeros({0, width}) : torch::cat(out, 0);
}

using Scalars = std::map<std::string, double>;

/// What train_step returns to log: `values`, numbers, and `deferred`, 0-dim tensors (possibly
/// still on the GPU) each logged as tensor / divisor. Reading a GPU tensor makes the host wait
/// for the GPU, so the trainer reads deferred values only when it writes a progress line or a
/// checkpoint, and on CUDA the host queues the next step's kernels while the GPU runs this one.
struct StepLog {
  Scalars values;
  std::map<std::string, std::pair<torch::Tensor, double>> deferred;
  StepLog() = default;
  StepLog(Scalars v) : values(std::move(v)) {}  // NOLINT: a task may return plain numbers
  StepLog(std::initializer_list<Scalars::value_type> v) : values(v) {}
};

/// Adds a 0-dim tensor to `sum` (undefined at first) in float64, where it is: how a train_step
/// sums a value over its micro-batches for StepLog::deferred without reading it.
inline void accumulate(torch::Tensor& sum, const torch::Tensor& value) {
  auto v = value.detach().to(torch::kDouble);
  sum = sum.defined() ? sum + v : v;
}

/// What a task's train_step may ask of the trainer. Implemented by Trainer.
class StepContext {
 public:
  virtual ~StepContext() = default;
  /// The step being taken, counting from 1.
  virtual int64_t step() const = 0;
  /// Micro-batches to accumulate into one optimizer step (train.accumulate).
  virtual int64_t accumulation() const = 0;
  virtual torch::Device device() const = 0;
  /// Whether the forward pass should run under autocast (see Autocast in trainer.h).
  virtual bool mixed_precision() const = 0;
  /// loss.backward(), divided by the accumulation count and scaled for fp16.
  virtual void backward(const torch::Tensor& loss, size_t optimizer = 0) = 0;
  /// Unscale, clip, step and zero the gradients of optimizer `optimizer`.
  /// Returns false when fp16 loss scaling skipped the step (non-finite gradients).
  virtual bool step_optimizer(size_t optimizer = 0) = 0;
};

class Task {
 public:
  virtual ~Task() = default;
  /// The network that is checkpointed as "model", averaged by EMA and evaluated.
  virtual torch::nn::Module& model() = 0;
  /// Other networks to checkpoint beside model() (a GAN's discriminator), by name.
  virtual std::vector<std::pair<std::string, torch::nn::Module*>> extra_modules() { return {}; }
  /// Parameters of each optimizer the trainer makes: one entry for most tasks, two for a GAN.
  virtual std::vector<std::vector<torch::Tensor>> optimizer_params() { return {model().parameters()}; }
  /// One optimizer step of work (ctx.accumulation() micro-batches). Returns what to log; "loss" at least.
  virtual StepLog train_step(StepContext& ctx) = 0;
  /// Metrics on `split` ("val" or "test") with the weights now in model().
  virtual Scalars evaluate(const std::string& split) = 0;
  /// evaluate(split), and from the same forward pass one line per example of `split` into `out`,
  /// tab-separated under a header line: its id, the gold label, the predicted one and the model's
  /// probabilities (zoo eval --predictions). Tasks that classify whole examples write them; the
  /// others say so, before any work.
  virtual Scalars evaluate_with_predictions(const std::string& split, std::ostream& out) {
    (void)split, (void)out;
    throw UsageError("--predictions: this task writes no predictions; it is for bert_spam checkpoints");
  }
  /// Called once before a run's first step: checks what training needs later (an evaluation
  /// split, a file an eval key names), so that a bad one fails before the steps, not after.
  virtual void before_training() {}
  /// The metric that picks best.pt, and whether higher is better.
  virtual std::pair<std::string, bool> best_metric() const = 0;
  /// Examples per optimizer step on this process (for the throughput figure).
  virtual int64_t examples_per_step() const = 0;
  /// n samples from a generative model, images (n, C, H, W) in [0, 1], using the config's
  /// sample.* keys. The global RNG (seeded by the caller) drives it.
  virtual torch::Tensor sample(int64_t n) {
    (void)n;
    throw UsageError("this task does not sample; zoo sample takes vae, gan, ddpm or ddim checkpoints");
  }
  /// `rows` interpolations of `steps` images each, row by row, (rows * steps, C, H, W) in [0, 1]:
  /// each row walks between two latent draws (zoo sample --interpolate). The global RNG drives it.
  virtual torch::Tensor interpolate(int64_t rows, int64_t steps) {
    (void)rows, (void)steps;
    throw UsageError("this task does not sample; zoo sample takes vae, gan, ddpm or ddim checkpoints");
  }
  /// One row of `steps` images walking from image `from` to image `to` (each (1, 1, H, W) in
  /// [0, 1]) through the latents the model finds for them (zoo sample --interpolate --between):
  /// (steps, C, H, W), its ends the model's reconstructions of the two images.
  virtual torch::Tensor interpolate_between(const torch::Tensor& from, const torch::Tensor& to, int64_t steps) {
    (void)from, (void)to, (void)steps;
    throw UsageError("this task does not sample; zoo sample takes vae, gan, ddpm or ddim checkpoints");
  }
  /// Outputs a person can look at (a sample grid, predictions), written into `dir`.
  virtual void write_outputs(const std::string& dir) { (void)dir; }
  /// The data position, so that --resume continues where the run left off.
  virtual void save_state(torch::serialize::OutputArchive& archive) { (void)archive; }
  virtual void load_state(torch::serialize::InputArchive& archive) { (void)archive; }
};

/// Where a task runs: device, and for data-parallel training its rank among world_size.
struct TaskContext {
  torch::Device device = torch::kCPU;
  int64_t rank = 0;
  int64_t world_size = 1;
  /// When a checkpoint is being loaded (zoo eval, sample, g2p, ...): the state its task saved
  /// with save_state. A task whose shape depends on what it was trained from (a vocabulary, a
  /// pretrained model's sizes) rebuilds itself from this, without those files. Null when training.
  torch::serialize::InputArchive* state = nullptr;
};

struct TaskInfo {
  std::string name;
  std::string description;
  /// Adds the task's own keys (model.*, data.*, ...) to the common ones.
  std::function<void(Schema&)> add_keys;
  std::function<std::unique_ptr<Task>(const Config&, const TaskContext&)> make;
};

/// Every task zoo knows, in the order `zoo list` shows them.
const std::vector<TaskInfo>& task_registry();
/// The task called `name`; UsageError naming the known ones otherwise.
const TaskInfo& find_task(const std::string& name);
/// find_task(cfg.task()).make(cfg, ctx), where a model too big for the device's memory is bad
/// input, not a crash: UsageError naming the model.* sizes to lower.
std::unique_ptr<Task> make_task(const Config& cfg, const TaskContext& ctx);

}  // namespace zoo
