// The training loop: one for every task. See tasks/task.h for the split of work.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "train/config.h"
#include "train/tasks/task.h"

namespace zoo {

/// "auto" -> cuda when available, else cpu; "cuda:N" checked against the devices present.
torch::Device resolve_device(const std::string& spec);
/// Applies train.threads, train.seed and train.deterministic to this process, and
/// keep_freed_memory().
void apply_runtime(const Config& cfg);
/// Once a process, where the C library is glibc: freed memory stays with the process for reuse
/// (mallopt: blocks up to 32 MiB from the heap, not from mmap; the heap trimmed only above 1 GiB
/// free). With glibc's defaults part of a step's freed activations goes back to the kernel and
/// is faulted in again on the next step (README, Speed: "Freed memory"). The cost: up to 1 GiB
/// of free heap stays with the process after a peak. Not applied, and false, where GLIBC_TUNABLES
/// sets a glibc.malloc key, MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is set (the user's
/// settings win), or ZOO_KEEP_FREED_MEMORY=0. Call it before starting threads of your own
/// (mallopt is not thread-safe); apply_runtime does, before the model is built.
bool keep_freed_memory();
/// What keeps keep_freed_memory from applying: a glibc.malloc key in GLIBC_TUNABLES,
/// MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set, or ZOO_KEEP_FREED_MEMORY=0. Throws
/// UsageError where ZOO_KEEP_FREED_MEMORY is set to anything but 0, 1 or nothing (as unset).
bool malloc_left_to_user();
/// Whether a /proc/cpuinfo text names a CPU feature for native bfloat16 arithmetic: x86's
/// avx512_bf16 or amx_bf16 flags, or Arm's bf16. Without one LibTorch emulates bfloat16 matrix
/// products on the CPU: on a 2-core AVX2 machine a 1,024 x 1,024 product ran at 4.2-4.3 GFLOP/s
/// in bfloat16 against 132-145 in float32 (README, bf16 on the CPU). A kernel older than the
/// flag (x86 5.3, Arm 5.10) lists none.
bool cpuinfo_has_bf16(const std::string& cpuinfo);
/// Learning rate at `step` (1-based): linear warmup, then cosine to optim.min_lr, constant, or
/// inverse square root (peak * sqrt(warmup / step)).
double learning_rate(const Config& cfg, int64_t step);

/// RAII autocast scope (torch.autocast) for CUDA (bf16 or fp16) or the CPU (bf16). A no-op
/// when disabled.
class Autocast {
 public:
  Autocast(bool enabled, at::ScalarType dtype, c10::DeviceType device = c10::DeviceType::CUDA);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool enabled_;
  c10::DeviceType device_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kHalf;
};

/// Exponential moving average of a module's parameters and floating buffers
/// (theta_ema <- d * theta_ema + (1 - d) * theta).
class EMA {
 public:
  EMA(torch::nn::Module& module, double decay);
  void update();
  /// Swaps the averaged weights into the module (and back on the second call).
  void swap();
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive, const std::string& path);
  /// The averaged weights (the module's own while swapped in).
  const std::vector<torch::Tensor>& averaged() const { return shadow_; }

 private:
  std::vector<torch::Tensor> live_, shadow_;
  std::vector<std::string> names_;
  double decay_;
};

struct TrainerOptions {
  /// Run directory: config.yaml, metrics.jsonl, checkpoints/, samples/.
  std::string run_dir;
  /// Continue from the newest loadable checkpoint in run_dir/checkpoints.
  bool resume = false;
  /// For one of train.restarts' runs: the directory of them all, which --resume takes (what
  /// messages name); empty for a run of its own.
  std::string restarts_dir;
  /// Stop (with a checkpoint) after this step even if train.steps is larger; for tests.
  std::optional<int64_t> stop_after;
  /// Data-parallel position (c10d slots in here); only rank 0 logs and checkpoints.
  int64_t rank = 0;
  int64_t world_size = 1;
};

class Trainer {
 public:
  Trainer(Config cfg, TrainerOptions options);
  ~Trainer();
  /// Trains to train.steps (or stop_after), then evaluates on the test split.
  /// Returns the final test metrics. Ctrl-C / SIGTERM: checkpoint, then interrupted() is true.
  Scalars run();
  bool interrupted() const { return interrupted_; }
  /// The best validation value of the task's best_metric() so far (none before an evaluation).
  std::optional<double> best_value() const { return best_; }
  Task& task() { return *task_; }
  /// The task's optimizers (one a network; the GAN has two), as the run set them up or resumed them.
  const std::vector<std::unique_ptr<torch::optim::Optimizer>>& optimizers() const { return optimizers_; }

 private:
  class Context;
  void save(int64_t step, bool best);
  int64_t restore();
  void log_row(const std::string& json_line);

  Config cfg_;
  TrainerOptions opt_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<Task> task_;
  std::vector<std::unique_ptr<torch::optim::Optimizer>> optimizers_;
  std::unique_ptr<EMA> ema_;
  std::unique_ptr<Context> ctx_;
  std::string window_json_ = "{}";  // running sums of the logging window, checkpointed
  std::optional<double> best_;  // the best validation value of task_->best_metric()
  bool interrupted_ = false;
  std::optional<std::string> log_error_;  // the first row metrics.jsonl could not take; the run ends on it once saved
};

/// What `zoo train` runs. train.restarts = 1: one Trainer. N > 1: N runs of the config, with
/// seeds train.seed, train.seed + 1, ..., in run_dir/restarts/seed-S (each resumed with
/// --resume); validation picks one: the best value of the task's best_metric(), the first seed
/// on a tie. Its best.pt is copied to run_dir/checkpoints/best.pt, run_dir/restarts.jsonl lists
/// each restart's value, and the chosen checkpoint's test metrics are returned (its "seed" too).
/// Returns {} when a run stops early (interrupted, or stop_after); *interrupted says which.
Scalars run_training(const Config& cfg, const TrainerOptions& options, bool* interrupted);

/// Rebuilds a checkpoint's task and loads its weights (EMA weights when the run kept them).
/// `overrides` are --set pairs applied to the stored config (e.g. data.root, train.device).
/// `runtime` applies the stored train.threads and train.seed to this process (false when a
/// task loads another run's checkpoint inside its own run, as fine-tuning does). `archive_out`,
/// where given, receives the checkpoint as read (and checked), for a caller that needs more of it.
std::unique_ptr<Task> load_task(const std::string& checkpoint, const std::vector<std::string>& overrides,
                                Config* config_out = nullptr, bool runtime = true,
                                torch::serialize::InputArchive* archive_out = nullptr);
/// The same, from a checkpoint already read (and checked) by read_checkpoint(checkpoint).
std::unique_ptr<Task> load_task(torch::serialize::InputArchive archive, const std::string& checkpoint,
                                const std::vector<std::string>& overrides, Config* config_out = nullptr,
                                bool runtime = true, torch::serialize::InputArchive* archive_out = nullptr);

/// Checkpoint averaging (Vaswani et al. 2017, Sec. 6.1: "a single model obtained by averaging the
/// last 5 checkpoints"): writes to `out` a checkpoint whose networks are the uniform average of
/// those of `inputs` (their EMA weights where the run kept an EMA; the stored config then says
/// train.ema false), with the config, step and data state of the last input. The inputs must be
/// of one task with the same fixed keys: UsageError otherwise, and for fewer than two or a repeat.
struct AverageResult {
  std::unique_ptr<Task> task;  // the average, loaded
  int64_t step = 0;            // the last input's step
};
AverageResult average_checkpoints(const std::vector<std::string>& inputs, const std::string& out);

/// Writes to `out` the weights `checkpoint` is evaluated with (its EMA weights where the run kept
/// an EMA; the stored config then says train.ema false), with its config, step and data state, and
/// nothing a run resumes from (optimizer state, RNG state, a second copy of the weights): a smaller
/// file that zoo eval, sample, g2p and the others read like any checkpoint. Returns its step.
int64_t export_checkpoint(const std::string& checkpoint, const std::string& out);

}  // namespace zoo
