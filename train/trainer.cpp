#include "train/trainer.h"

#include <ATen/autocast_mode.h>
#include <dlfcn.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <csignal>
#include <functional>
#include <iterator>
#include <limits>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "train/checkpoint.h"
#include "train/optim.h"
#include "train/rng.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace zoo {

/// j as one line of JSON; bytes that are not UTF-8 (in a path: a run directory's name) become
/// U+FFFD, where nlohmann's dump() would throw after the training it records.
static std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// A run whose loss or weights stopped being finite (a learning rate far too high); thrown
/// before anything is saved. A restarts run leaves that seed out.
struct DivergedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal = sig;
  std::signal(sig, SIG_DFL);  // a second Ctrl-C kills at once
}

// During the final evaluation Ctrl-C (or SIGTERM) ends the process at once, as it would without
// a handler, but first says (write(2): safe in a handler) that the checkpoints are saved.
char g_eval_note[1024];
size_t g_eval_note_size = 0;
extern "C" void on_signal_in_final_eval(int sig) {
  const ssize_t written = ::write(STDERR_FILENO, g_eval_note, g_eval_note_size);
  (void)written;
  (void)sig;
  ::_exit(130);  // zoo's code for an interrupted run, SIGTERM's too
}

/// Installs `handler` for SIGINT and SIGTERM for as long as it lives, then puts back what was there.
struct SignalScope {
  void (*old_int)(int), (*old_term)(int);
  explicit SignalScope(void (*handler)(int))
      : old_int(std::signal(SIGINT, handler)), old_term(std::signal(SIGTERM, handler)) {}
  ~SignalScope() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;
};

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto t = static_cast<int64_t>(s);
  std::ostringstream os;
  if (t >= 3600) os << t / 3600 << "h" << (t % 3600) / 60 << "m";
  else if (t >= 60) os << t / 60 << "m" << t % 60 << "s";
  else os << t << "s";
  return os.str();
}

// The task's networks into a checkpoint: "model", and "modules/NAME" for each other one.
void write_networks(Task& task, torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive m;
  task.model().save(m);
  archive.write("model", m);
  for (auto& [name, module] : task.extra_modules()) {
    torch::serialize::OutputArchive e;
    module->save(e);
    archive.write("modules/" + name, e);
  }
}

/// Whether `value` beats `best` in the metric's direction; anything beats no value yet.
bool improves(double value, std::optional<double> best, bool higher_better) {
  return !best || (higher_better ? value > *best : value < *best);
}

at::ScalarType precision_dtype(const Config& cfg, const torch::Device& device, bool* enabled) {
  auto p = cfg.get_string("train.precision");
  if (p == "auto") p = device.is_cuda() ? "bf16" : "fp32";
  // CPU autocast is bf16's alone in LibTorch 1.13 (float16 came to it later, and runs slowly on CPUs).
  if (p == "fp16" && !device.is_cuda())
    throw UsageError("train.precision: fp16 needs a CUDA device (train.device is " + device.str() +
                     "); on the CPU use bf16 or fp32");
  *enabled = p != "fp32";
  return p == "fp16" ? at::kHalf : at::kBFloat16;
}

void check_schedule(const Config& cfg) {
  const int64_t cooldown = cfg.get_int("optim.cooldown_steps");
  const bool floor_used = cfg.get_string("optim.schedule") == "cosine" || cooldown > 0;
  if (floor_used && cfg.get_float("optim.min_lr") > cfg.get_float("optim.lr"))
    throw UsageError(fmt::format("optim.min_lr: {} is above optim.lr ({}); the floor must be at most the peak",
                                 cfg.get_float("optim.min_lr"), cfg.get_float("optim.lr")));
  if (cooldown == 0) return;
  if (cfg.get_string("optim.schedule") == "cosine")
    throw UsageError("optim.cooldown_steps: the cosine schedule decays by itself; use schedule constant or "
                     "inverse_sqrt with a cooldown, or set optim.cooldown_steps=0");
  const int64_t room = cfg.get_int("train.steps") - cfg.get_int("optim.warmup_steps");
  if (cooldown > room)
    throw UsageError("optim.cooldown_steps: " + std::to_string(cooldown) + " is more than the " +
                     std::to_string(std::max<int64_t>(room, 0)) +
                     " steps after warmup (train.steps - optim.warmup_steps); lower it or raise train.steps");
}

}  // namespace

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cpu") return torch::kCPU;
  const int64_t index = spec == "cuda" ? 0 : std::stoll(spec.substr(5));
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (!torch::cuda::is_available() || index >= count)
    throw UsageError("train.device: " + spec + " requested but this LibTorch sees " + std::to_string(count) +
                     " CUDA device(s); use train.device=cpu or auto");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

namespace {

/// Once a process, with more than one thread: a warning when the BLAS that LibTorch calls is
/// OpenBLAS's pthreads build (its openblas_get_parallel() says 1; 2 is the OpenMP build, 0 a
/// serial one) running on more than one thread of its own. Its threads and LibTorch's OpenMP
/// threads spin against each other between products: a CPU training step took 1.5-3.4x as long
/// here as with the OpenMP build (README, Speed). LibTorch builds with MKL have no such symbols
/// and get no warning.
void warn_if_blas_contends(int threads) {
  if (threads < 2) return;
  [[maybe_unused]] static const bool checked = [] {  // a function-local static: initialised once, thread-safe
    using Query = int (*)();
    const auto parallel = reinterpret_cast<Query>(::dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
    const auto blas_threads = reinterpret_cast<Query>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (parallel && blas_threads && parallel() == 1 && blas_threads() > 1)
      spdlog::warn("BLAS is OpenBLAS's pthreads build, whose threads contend with LibTorch's: CPU steps take about "
                   "twice as long; scripts/install-deps selects libopenblas0-openmp (or set OPENBLAS_NUM_THREADS=1)");
    return true;
  }();
}

/// Once a process: a warning when bf16 autocast runs on a CPU whose /proc/cpuinfo names no
/// native bfloat16 feature (cpuinfo_has_bf16). Silent where the file can't be read (not Linux).
void warn_if_bf16_emulated() {
  [[maybe_unused]] static const bool checked = [] {
    std::ifstream in("/proc/cpuinfo");
    if (!in) return true;
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (!text.empty() && !cpuinfo_has_bf16(text))
      spdlog::warn("train.precision=bf16: this CPU has no native bfloat16 (no avx512_bf16, amx_bf16 or bf16 in "
                   "/proc/cpuinfo), so LibTorch likely emulates it and a step can take many times as long as in fp32; "
                   "set train.precision=fp32");
    return true;
  }();
}

}  // namespace

bool cpuinfo_has_bf16(const std::string& cpuinfo) {
  std::istringstream lines(cpuinfo);
  std::string line;
  while (std::getline(lines, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto key = line.substr(0, line.find_first_of(" \t:"));
    if (key != "flags" && key != "Features") continue;  // x86 and Arm name their feature lists so
    std::istringstream words(line.substr(colon + 1));
    std::string w;
    while (words >> w)
      if (w == "avx512_bf16" || w == "amx_bf16" || w == "bf16") return true;
  }
  return false;
}

bool malloc_left_to_user() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  const char* own = std::getenv("ZOO_KEEP_FREED_MEMORY");
  if (own && !std::string(own).empty() && std::string(own) != "0" && std::string(own) != "1")  // "off" left it on
    throw UsageError("ZOO_KEEP_FREED_MEMORY=" + std::string(own) + ": expected 0 (off) or 1 (on, as when unset)");
  return (tunables && std::strstr(tunables, "glibc.malloc.")) || std::getenv("MALLOC_MMAP_THRESHOLD_") ||
         std::getenv("MALLOC_TRIM_THRESHOLD_") || (own && std::string(own) == "0");
}

bool keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool applied = [] {  // once a process
    if (malloc_left_to_user()) return false;  // the user's own settings win
    // 32 MiB is the largest mmap threshold 64-bit glibc takes (16 MiB on 32-bit: 0 is returned).
    const bool mmap_set = ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
    const bool trim_set = ::mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    return mmap_set && trim_set;
  }();
  return applied;
#else
  return false;
#endif
}

void apply_runtime(const Config& cfg) {
  keep_freed_memory();
  const auto& threads = cfg.get_string("train.threads");
  const int n = threads == "auto" ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                                  : std::stoi(threads);
  torch::set_num_threads(n);
  warn_if_blas_contends(n);
  torch::manual_seed(static_cast<uint64_t>(cfg.get_int("train.seed")));
  const bool det = cfg.get_bool("train.deterministic");
  // cuBLAS is deterministic only with a fixed workspace, set before its first use (PyTorch's
  // reproducibility notes); a user's own setting wins.
  if (det) ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(det, /*warn_only=*/false);
  at::globalContext().setBenchmarkCuDNN(!det);
}

double learning_rate(const Config& cfg, int64_t step) {
  const double peak = cfg.get_float("optim.lr"), floor = cfg.get_float("optim.min_lr");
  const int64_t warmup = cfg.get_int("optim.warmup_steps"), total = cfg.get_int("train.steps");
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(step) / static_cast<double>(warmup);
  const auto& schedule = cfg.get_string("optim.schedule");
  if (schedule != "cosine") {
    // Vaswani et al. Eq. 3, d^-0.5 min(step^-0.5, step warmup^-1.5), is this with peak = (d warmup)^-0.5.
    auto rate = [&](int64_t t) {  // t >= 1: a cooldown spanning a whole run starts from step 1's rate
      const auto from_one = static_cast<double>(std::max<int64_t>(t, 1));
      return schedule == "constant" ? peak
                                    : peak * std::sqrt(static_cast<double>(std::max<int64_t>(warmup, 1)) / from_one);
    };
    // The cooldown: from the schedule's rate where it starts, linearly down to min_lr at the last step.
    const int64_t cooldown = cfg.get_int("optim.cooldown_steps"), from = total - cooldown;
    if (cooldown == 0 || step <= from) return rate(step);
    const double left = static_cast<double>(total - step) / static_cast<double>(cooldown);
    return floor + (rate(from) - floor) * left;
  }
  if (total <= warmup) return peak;
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// ---------------------------------------------------------------- Autocast
Autocast::Autocast(bool enabled, at::ScalarType dtype, c10::DeviceType device)
    : enabled_(enabled), device_(device) {
  if (!enabled_) return;
  TORCH_CHECK(device_ == c10::DeviceType::CUDA || device_ == c10::DeviceType::CPU,
              "zoo::Autocast: cuda or cpu, not ", device_);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  prev_enabled_ = at::autocast::is_autocast_enabled(device_);
  prev_dtype_ = at::autocast::get_autocast_dtype(device_);
  at::autocast::set_autocast_enabled(device_, true);
  at::autocast::set_autocast_dtype(device_, dtype);
#else
  if (device_ == c10::DeviceType::CPU) {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(device_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_, prev_dtype_);
#else
  if (device_ == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  }
#endif
}

// ---------------------------------------------------------------- EMA
EMA::EMA(torch::nn::Module& module, double decay) : decay_(decay) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    names_.push_back(p.key());
    live_.push_back(p.value());
  }
  for (auto& b : module.named_buffers()) {
    if (!b.value().is_floating_point()) continue;
    names_.push_back(b.key());
    live_.push_back(b.value());
  }
  for (auto& t : live_) shadow_.push_back(t.detach().clone());
}

void EMA::update() {
  torch::NoGradGuard no_grad;
#if TORCH_VERSION_MAJOR >= 2
  at::_foreach_lerp_(shadow_, live_, 1.0 - decay_);  // one multi-tensor kernel on CUDA
#else
  for (size_t i = 0; i < live_.size(); ++i) shadow_[i].lerp_(live_[i], 1.0 - decay_);
#endif
}

void EMA::swap() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) {
    auto tmp = live_[i].clone();
    live_[i].copy_(shadow_[i]);
    shadow_[i].copy_(tmp);
  }
}

void EMA::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive sub;
  std::string names;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    sub.write("t" + std::to_string(i), shadow_[i], /*is_buffer=*/true);
    names += names_[i] + "\n";
  }
  sub.write("names", c10::IValue(names));
  archive.write("ema", sub);
}

void EMA::load(torch::serialize::InputArchive& archive, const std::string& path) {
  torch::serialize::InputArchive sub;
  if (!archive.try_read("ema", sub))
    throw UsageError(path + ": train.ema is on but the checkpoint holds no EMA weights; resume with --set train.ema=false, "
                     "or start a new run with another --run-dir");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    torch::Tensor t;
    if (!sub.try_read("t" + std::to_string(i), t, true) || t.sizes() != shadow_[i].sizes())
      throw UsageError(path + ": EMA weight " + names_[i] + " is missing or has the wrong shape");
    try {  // e.g. a record of another kind of tensor (quantized) that can't be copied into a float one
      check_finite_weight(t, path + ": EMA weight " + names_[i]);
      shadow_[i].copy_(t);
    } catch (const c10::Error& e) {
      const std::string what = e.what_without_backtrace();
      throw UsageError(path + ": EMA weight " + names_[i] + " cannot be loaded (" + what.substr(0, what.find('\n')) +
                       "); use another checkpoint");
    }
  }
}

// ---------------------------------------------------------------- step context
class Trainer::Context : public StepContext {
 public:
  Context(Trainer& t, bool amp, at::ScalarType dtype) : t_(t), amp_(amp), dtype_(dtype) {}
  int64_t step() const override { return step_; }
  int64_t accumulation() const override { return t_.cfg_.get_int("train.accumulate"); }
  torch::Device device() const override { return t_.device_; }
  bool mixed_precision() const override { return amp_; }
  at::ScalarType dtype() const { return dtype_; }

  void backward(const torch::Tensor& loss, size_t) override {
    auto l = loss / static_cast<double>(accumulation());
    if (fp16()) l = l * scale_;
    l.backward();
  }

  bool step_optimizer(size_t index) override {
    TORCH_CHECK(index < t_.optimizers_.size(), "task asked for optimizer ", index, " of ", t_.optimizers_.size());
    auto& opt = *t_.optimizers_[index];
    std::vector<torch::Tensor> params;
    for (auto& g : opt.param_groups())
      for (auto& p : g.params())
        if (p.grad().defined()) params.push_back(p);
    if (fp16()) {  // dynamic loss scaling (Micikevicius et al. 2018)
      torch::NoGradGuard no_grad;
      auto finite = torch::ones({}, torch::kBool).to(t_.device_);
      for (auto& p : params) {
        p.mutable_grad().div_(scale_);
        finite = finite & torch::isfinite(p.grad()).all();
      }
      if (!finite.item<bool>()) {  // this optimizer's step is skipped; update_scale halves the scale
        opt.zero_grad();
        overflow_ = true;
        return false;
      }
    }
    const double clip = t_.cfg_.get_float("train.grad_clip");
    if (clip > 0 && !params.empty()) clip_grad_norm(params, clip);
    opt.step();
    opt.zero_grad();
    // Autocast keeps low-precision copies of the weights until its scope ends; a forward pass
    // later in this step (the GAN's generator step through the discriminator) must see the new ones.
    if (amp_) at::autocast::clear_cache();
    return true;
  }

  /// Once per training step, however many optimizers it stepped (the GAN's two), as
  /// GradScaler.update: the scale halved after an overflow, doubled after 2,000 steps without one.
  void update_scale() {
    if (!fp16()) return;
    if (overflow_) scale_ /= 2, good_steps_ = 0;
    else if (++good_steps_ % 2000 == 0) scale_ *= 2;
    overflow_ = false;
  }

  bool fp16() const { return amp_ && dtype_ == at::kHalf; }
  int64_t step_ = 0;
  double scale_ = 65536.0;
  int64_t good_steps_ = 0;
  bool overflow_ = false;  // this training step: an optimizer's gradients were not finite

 private:
  Trainer& t_;
  bool amp_;
  at::ScalarType dtype_;
};

// ---------------------------------------------------------------- trainer
Trainer::Trainer(Config cfg, TrainerOptions options) : cfg_(std::move(cfg)), opt_(std::move(options)) {
  device_ = resolve_device(cfg_.get_string("train.device"));
  check_schedule(cfg_);
  if (cfg_.get_bool("train.ema") && cfg_.get_float("train.ema_decay") >= 1.0)
    throw UsageError("train.ema_decay: must be below 1 while train.ema is on: at 1 the average, which evaluation, "
                     "samples and best.pt use, never leaves the initial weights; e.g. 0.999, or train.ema=false");
  bool amp = false;
  auto dtype = precision_dtype(cfg_, device_, &amp);
  if (amp && !device_.is_cuda() && opt_.rank == 0) warn_if_bf16_emulated();
  apply_runtime(cfg_);
  task_ = make_task(cfg_, TaskContext{device_, opt_.rank, opt_.world_size});
  task_->before_training();
  for (auto& params : task_->optimizer_params()) optimizers_.push_back(make_optimizer(cfg_, params));
  if (cfg_.get_bool("train.ema")) ema_ = std::make_unique<EMA>(task_->model(), cfg_.get_float("train.ema_decay"));
  ctx_ = std::make_unique<Context>(*this, amp, dtype);
}

Trainer::~Trainer() = default;

void Trainer::log_row(const std::string& line) {
  if (opt_.rank != 0) return;
  const auto path = fs::path(opt_.run_dir) / "metrics.jsonl";
  std::ofstream out(path, std::ios::app);
  out << line << "\n";
  out.flush();
  if (!out && !log_error_) {  // as samples that can't be written: training goes on, and ends on it once saved
    log_error_ = path.string() + ": cannot append a row (a full disk, or a folder in the way)";
    spdlog::error("{}", *log_error_);
  }
}

void Trainer::save(int64_t step, bool best) {
  if (opt_.rank != 0) return;
  torch::serialize::OutputArchive archive;
  archive.write("config", c10::IValue(cfg_.to_yaml()));
  archive.write("step", c10::IValue(step));
  archive.write("lr", c10::IValue(learning_rate(cfg_, std::max<int64_t>(step, 1))));
  archive.write("window", c10::IValue(window_json_));
  archive.write("best", c10::IValue(best_.value_or(std::nan(""))));
  write_networks(*task_, archive);
  for (size_t i = 0; i < optimizers_.size(); ++i) {
    torch::serialize::OutputArchive o;
    optimizers_[i]->save(o);
    archive.write("optim/" + std::to_string(i), o);
  }
  if (ema_) ema_->save(archive);
  const auto rng = RngState::capture(device_);
  archive.write("rng/cpu", rng.cpu, /*is_buffer=*/true);
  if (rng.cuda.defined()) archive.write("rng/cuda", rng.cuda, /*is_buffer=*/true);
  archive.write("amp/scale", c10::IValue(ctx_->scale_));
  archive.write("amp/good_steps", c10::IValue(ctx_->good_steps_));  // when the scale next doubles
  {
    torch::serialize::OutputArchive t;
    task_->save_state(t);
    archive.write("task", t);
  }
  const auto dir = fs::path(opt_.run_dir) / "checkpoints";
  // best.pt first: killed between the two, the run resumes from the step checkpoint before this
  // one, whose best value is the older one, and rewrites best.pt when it evaluates this step
  // again. The other way round, the step file would hold the new best value and best.pt the older
  // weights.
  const auto step_path = (dir / step_checkpoint_name(step)).string();
  std::vector<std::string> paths;
  if (best) paths.push_back((dir / "best.pt").string());
  paths.push_back(step_path);
  write_checkpoint(archive, paths);
  // Keep the last train.keep_last up to this one; a later one (unreadable, or a longer run's) is left alone.
  std::vector<std::string> upto;
  for (auto& p : list_step_checkpoints(dir.string()))
    if (step_of_checkpoint_name(p) <= step) upto.push_back(p);
  const auto keep = static_cast<size_t>(cfg_.get_int("train.keep_last"));
  for (size_t i = 0; i + keep < upto.size(); ++i) {
    std::error_code ec;  // one that can't be removed (its permissions) is left, and training goes on
    if (upto[i] != step_path && !fs::remove(upto[i], ec) && ec)
      spdlog::warn("{}: could not remove an old checkpoint ({}); remove it by hand", upto[i], ec.message());
  }
}

namespace {
/// The refusal of a --resume whose run directory holds no step checkpoint, with what to do.
UsageError no_step_checkpoints(const std::string& run_dir) {
  auto named = fs::path(run_dir);
  if (!named.has_filename()) named = named.parent_path();  // "run/checkpoints/"
  std::string what = "start without --resume or pass the run's --run-dir";
  if (fs::exists(fs::path(run_dir) / "checkpoints" / "best.pt"))
    what = "its best.pt is for zoo eval; start a new run with another --run-dir";
  else if (named.filename() == "checkpoints" && !list_step_checkpoints(named.string()).empty())
    what = "that is a run's checkpoints/ folder; pass the run itself: --run-dir " +
           (named.parent_path().empty() ? std::string(".") : named.parent_path().string());
  return UsageError(run_dir + ": --resume found no checkpoints/step-*.pt; " + what);
}
}  // namespace

int64_t Trainer::restore() {
  const auto dir = (fs::path(opt_.run_dir) / "checkpoints").string();
  auto all = list_step_checkpoints(dir);
  if (all.empty()) throw no_step_checkpoints(opt_.run_dir);
  // Newest first; a file that can't be read (it can't be half-written, but it may be foreign) is skipped.
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const auto& path = *it;
    torch::serialize::InputArchive archive;
    try {
      archive = read_checkpoint(path, device_);  // optimizer state goes where the weights train
    } catch (const UsageError& e) {
      spdlog::warn("skipping {}", e.what());
      continue;
    }
    std::vector<std::string> changed;  // other keys may change (train.steps, to go on), but not unnoticed
    {  // a key that shapes the weights can't change under a resumed run
      const auto trained = Config::from_yaml(checkpoint_config(archive, path), path + " (stored config)");
      if (trained.task() != cfg_.task())
        throw UsageError("--resume: " + path + " holds a " + trained.task() + " run, not " + cfg_.task() +
                         "; resume it with its own config (" + (fs::path(opt_.run_dir) / "config.yaml").string() +
                         "), or start a new run with another --run-dir");
      if (const auto key = changed_fixed_key(cfg_, trained); !key.empty())
        throw UsageError("--resume: " + key + " is " + show_value(cfg_.value(key)) + " but " + path +
                         " was trained with " + show_value(trained.value(key)) + "; put it back, or start a new run "
                         "with another --run-dir");
      changed = changed_keys(cfg_, trained);
    }
    load_module(task_->model(), archive, "model", path);
    for (auto& [name, module] : task_->extra_modules()) load_module(*module, archive, "modules/" + name, path);
    for (size_t i = 0; i < optimizers_.size(); ++i) {
      torch::serialize::InputArchive o;
      if (!archive.try_read("optim/" + std::to_string(i), o))
        throw UsageError(path + ": holds no optimizer state (a file of zoo export or zoo average, for evaluating); "
                         "move it out of checkpoints/ and --resume again");
      // LibTorch 2.x's load also puts back each group's saved options (betas, eps, weight decay,
      // momentum); 1.13's keeps the current ones. The config's win on both, as the warning about
      // changed keys says (the learning rate is set every step anyway).
      std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> current;
      for (auto& g : optimizers_[i]->param_groups()) current.push_back(g.options().clone());
      try {
        optimizers_[i]->load(o);
      } catch (const c10::Error& e) {
        throw UsageError(path + ": optimizer state does not fit this config (optim.name changed?)");
      }
      auto& groups = optimizers_[i]->param_groups();  // as many as before: load checks
      for (size_t g = 0; g < groups.size(); ++g) groups[g].set_options(std::move(current[g]));
      if (const auto what = optimizer_state_mismatch(*optimizers_[i]); !what.empty())
        throw UsageError(path + ": damaged checkpoint: optimizer " + std::to_string(i) + ": " + what +
                         "; move it away to resume from the one before");
    }
    if (ema_) ema_->load(archive, path);
    // The rest of the state, which a damaged (or crafted) file may hold wrongly though its CRCs match.
    auto damaged = [&](const std::string& what) {
      return UsageError(path + ": damaged checkpoint: " + what + "; move it away to resume from the one before");
    };
    c10::IValue v;
    if (!archive.try_read("step", v) || !v.isInt() || v.toInt() < 0) throw damaged("its step is missing or not a count");
    const auto step = v.toInt();
    try {
      RngState rng;
      if (!archive.try_read("rng/cpu", rng.cpu, true)) throw damaged("its random-number state (rng/cpu) is missing");
      if (device_.is_cuda()) archive.try_read("rng/cuda", rng.cuda, true);
      rng.apply(device_);
      if (archive.try_read("amp/scale", v)) {
        if (!v.isDouble() || !std::isfinite(v.toDouble()) || v.toDouble() <= 0)
          throw damaged("its loss scale (amp/scale) is not a finite positive number");
        ctx_->scale_ = v.toDouble();
      }
      if (archive.try_read("amp/good_steps", v)) {  // absent from checkpoints before it was saved
        if (!v.isInt() || v.toInt() < 0) throw damaged("its loss-scale step count (amp/good_steps) is not a count");
        ctx_->good_steps_ = v.toInt();
      }
      if (archive.try_read("window", v)) {
        const auto w = v.isString() ? json::parse(v.toStringRef(), nullptr, false) : json();
        const bool numbers = w.is_object() && std::all_of(w.begin(), w.end(), [](const json& x) { return x.is_number(); });
        if (!numbers) throw damaged("its logging window is not a JSON object of numbers");
        window_json_ = v.toStringRef();
      }
      if (archive.try_read("best", v)) {
        if (!v.isDouble() || std::isinf(v.toDouble()))  // NaN: none yet
          throw damaged("its best validation value is not a finite number");
        if (!std::isnan(v.toDouble())) best_ = v.toDouble();
      }
      torch::serialize::InputArchive t;
      if (archive.try_read("task", t)) {
        try {
          task_->load_state(t);
        } catch (const UsageError& e) {  // the task's own message, with the file named
          throw UsageError(path + ": " + e.what());
        }
      }
    } catch (const c10::Error& e) {
      const std::string what = e.what_without_backtrace();
      throw damaged(what.substr(0, what.find('\n')));
    }
    spdlog::info("resumed from {} (step {})", path, step);
    if (!changed.empty() && opt_.rank == 0) {
      std::string list;
      for (const auto& c : changed) list += (list.empty() ? "" : ", ") + c;
      spdlog::warn("--resume: the run goes on with {} key(s) changed from its stored config: {}", changed.size(), list);
    }
    return step;
  }
  throw UsageError(dir + ": no step checkpoint loads (the warnings above say why); start a new run with another "
                   "--run-dir (a best.pt there still works with zoo eval)");
}

Scalars Trainer::run() {
  const bool main = opt_.rank == 0;
  fs::create_directories(fs::path(opt_.run_dir) / "checkpoints");
  fs::create_directories(fs::path(opt_.run_dir) / "samples");
  if (main)  // a run killed in the middle of a write leaves its temporary file; a resume clears it
    for (const auto& d : {fs::path(opt_.run_dir), fs::path(opt_.run_dir) / "checkpoints", fs::path(opt_.run_dir) / "samples"})
      if (const auto n = remove_stale_temporaries(d.string()); n > 0)
        spdlog::info("removed {} temporary file(s) that a killed run left in {}", n, d.string());

  int64_t start = 0;
  const auto metrics_path = fs::path(opt_.run_dir) / "metrics.jsonl";
  // What the run writes there must be files, or not be there yet (checked on every rank, so that
  // all stop, not rank 0 alone).
  for (const auto& f : {metrics_path, fs::path(opt_.run_dir) / "config.yaml"})
    if (fs::exists(f) && !fs::is_regular_file(f))
      throw UsageError(f.string() + ": is not a file (a folder?) and the run writes its " + f.filename().string() +
                       " there; move it away, or use another --run-dir");
  const int64_t total = cfg_.get_int("train.steps");
  // A folder where this run will write a checkpoint (best.pt, or a step it will reach) is found
  // now, not when the first checkpoint fails after checkpoint_every steps of training.
  const auto refuse_folders_in_the_way = [&](int64_t from) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(opt_.run_dir) / "checkpoints", ec)) {
      const auto name = e.path().filename().string();
      const auto at = step_of_checkpoint_name(name);
      if ((name == "best.pt" || (at > from && at <= total)) && e.is_directory(ec))
        throw UsageError(e.path().string() + ": is a folder where this run may write a checkpoint; move it away, or use "
                         "another --run-dir");
    }
  };
  if (opt_.resume) {
    start = restore();  // before config.yaml is written: a refused --resume leaves the run as it was
    if (start > total)
      throw UsageError("--resume: the run is at step " + std::to_string(start) + ", past train.steps=" +
                       std::to_string(total) + "; give a train.steps of at least " +
                       std::to_string(start) + " (its config.yaml has the run's own)");
    refuse_folders_in_the_way(start);
    // Drop rows the interrupted run logged after its last checkpoint: they are logged again. So
    // are the final evaluation's (val and test at train.steps, logged after its checkpoint; the
    // periodic evaluation skips that step), when the run resumes there to evaluate again.
    if (main && fs::exists(metrics_path)) {
      std::ifstream in(metrics_path);
      std::string line, kept;
      while (std::getline(in, line)) {
        auto row = json::parse(line, nullptr, /*allow_exceptions=*/false);
        // A row that is not an object with an integer step is not the trainer's: dropped.
        if (row.is_discarded() || !row.is_object() || !row.contains("step") || !row["step"].is_number_integer())
          continue;
        const auto at = row["step"].get<int64_t>();
        const bool train_row = row.contains("split") && row["split"] == "train";
        if (at <= start && !(at == total && start == total && !train_row)) kept += line + "\n";
      }
      atomic_write(metrics_path.string(), kept);
    }
  } else {
    refuse_folders_in_the_way(0);
    if (main && !std::ofstream(metrics_path, std::ios::trunc))
      throw UsageError(metrics_path.string() + ": cannot be written (permissions?); use another --run-dir");
  }
  if (main) atomic_write((fs::path(opt_.run_dir) / "config.yaml").string(), cfg_.to_yaml());

  const int64_t last = opt_.stop_after ? std::min(total, *opt_.stop_after) : total;
  const int64_t log_every = cfg_.get_int("train.log_every"), eval_every = cfg_.get_int("train.eval_every");
  const int64_t ckpt_every = cfg_.get_int("train.checkpoint_every");
  const auto [best_key, higher_better] = task_->best_metric();

  g_signal = 0;
  // Ctrl-C and SIGTERM save a checkpoint while the loop runs, however it ends.
  auto signals = std::make_unique<SignalScope>(on_signal);

  // Evaluation and outputs see the EMA weights when the run keeps them.
  auto with_eval_weights = [&](const std::function<void()>& fn) {
    // The training weights and mode come back however fn ends: an output that can't be written
    // is caught below and training goes on, and a bad held-out file saves a checkpoint.
    struct Restore {
      Task& task;
      EMA* ema;
      ~Restore() {
        if (ema) ema->swap();
        task.model().train();
      }
    };
    task_->model().eval();
    if (ema_) ema_->swap();
    Restore restore{*task_, ema_.get()};
    torch::NoGradGuard no_grad;
    fn();
  };
  const int64_t sample_every = cfg_.get_int("train.sample_every");
  // Outputs that cannot be written (a folder in the way, a full disk) do not stop training or
  // keep its checkpoints from being saved: the first such error ends the run once they are.
  std::optional<std::string> outputs_error;
  auto write_outputs = [&] {
    if (!main) return;
    try {
      with_eval_weights([&] { task_->write_outputs((fs::path(opt_.run_dir) / "samples").string()); });
    } catch (const c10::Error&) {
      throw;  // torch's own failure (out of memory, a bug): not the output path's
    } catch (const std::exception& e) {
      if (!outputs_error) {
        spdlog::error("samples not written: {}", e.what());
        outputs_error = e.what();
      }
    }
  };
  auto evaluate = [&](const std::string& split, int64_t step) {
    Scalars m;
    with_eval_weights([&] { m = task_->evaluate(split); });
    if (sample_every == 0) write_outputs();
    json row{{"step", step}, {"split", split}};
    std::string line;
    for (auto& [k, v] : m) {
      row[k] = v;
      line += fmt::format("  {} {:.4f}", k, v);
    }
    if (main) spdlog::info("eval {} @ step {}:{}", split, step, line);
    log_row(dump(row));
    return m;
  };

  json window = json::parse(window_json_);
  // Deferred step values (StepLog::deferred) not yet added to the window, read only when a
  // progress line or a checkpoint needs them, in one transfer (on CPU too, so that the tests run
  // this path). Each value is added in step order, so the sums do not depend on when they are read.
  std::map<std::string, std::vector<std::pair<torch::Tensor, double>>> deferred;
  auto read_deferred = [&] {
    if (deferred.empty()) return;
    std::vector<torch::Tensor> ts;
    for (auto& [k, list] : deferred)
      for (auto& [t, divisor] : list)  // on the first one's device, so that one transfer reads them all
        ts.push_back(t.detach().reshape({}).to(ts.empty() ? t.device() : ts.front().device(), torch::kDouble));
    auto host = torch::stack(ts).cpu();
    const auto* p = host.data_ptr<double>();
    for (auto& [k, list] : deferred) {
      double sum = window.value(k, 0.0);
      for (auto& [t, divisor] : list) sum += *p++ / divisor;
      window[k] = sum;
    }
    deferred.clear();
  };
  // A loss that is no longer finite stops the run before anything is saved, so that the last
  // checkpoints (and best.pt) stay those of a healthy run.
  int64_t saved = start;
  auto diverged = [&](const std::string& what, int64_t step) {
    return DivergedError(
        fmt::format("training diverged: {} by step {}; ", what, step) +
        (saved > 0 ? fmt::format("nothing after step {} was saved. Lower optim.lr (or set train.grad_clip) and "
                                 "start again, or continue from step {} with --resume",
                                 saved, saved)
                   : std::string("nothing was saved. Lower optim.lr (or set train.grad_clip) and start again")));
  };
  auto check_finite = [&](int64_t step) {
    for (auto& [k, v] : window.items())
      if (k.find("loss") != std::string::npos && !std::isfinite(v.get<double>()))
        throw diverged(fmt::format("{} is {}", k, std::isnan(v.get<double>()) ? "nan" : v.get<double>() > 0 ? "inf" : "-inf"),
                       step);  // "nan" whatever its sign bit
  };
  // The weights themselves at a checkpoint (the loss logged at step k is that of the weights
  // before step k's update): one reduction, one read.
  auto check_weights = [&](int64_t step) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> ok;
    // Everything a load checks (load_module, EMA::load): parameters, floating-point buffers
    // (batch-norm statistics) and the EMA's weights, so that a run never writes a checkpoint it
    // would refuse to read.
    auto add_tensor = [&](const torch::Tensor& t) {
      if (t.defined() && t.is_floating_point()) ok.push_back(torch::isfinite(t).all());
    };
    auto add = [&](torch::nn::Module& m) {
      for (auto& p : m.parameters()) add_tensor(p);
      for (auto& b : m.buffers()) add_tensor(b);
    };
    add(task_->model());
    for (auto& [name, module] : task_->extra_modules()) add(*module);
    if (ema_)
      for (auto& t : ema_->averaged()) add_tensor(t);
    if (!ok.empty() && !torch::stack(ok).all().item<bool>()) throw diverged("the weights are not finite", step);
  };
  auto save_checkpoint = [&](int64_t step, bool best) {
    read_deferred();
    check_finite(step);
    check_weights(step);
    saved = step;
    window_json_ = dump(window);
    save(step, best);
  };
  auto t_window = std::chrono::steady_clock::now();
  const auto t_start = t_window;
  int64_t window_steps = 0;
  task_->model().train();
  if (main)
    spdlog::info("training {} on {} in {} for {} steps (from step {}) -> {}", cfg_.task(), device_.str(),
                 !ctx_->mixed_precision() ? "fp32" : ctx_->dtype() == torch::kBFloat16 ? "bf16" : "fp16", total, start,
                 opt_.run_dir);

  int64_t step = start;
  while (step < last) {
    ++step;
    ctx_->step_ = step;
    const double lr = learning_rate(cfg_, step);
    for (auto& o : optimizers_)
      for (auto& g : o->param_groups()) g.options().set_lr(lr);
    StepLog s;
    {
      Autocast amp(ctx_->mixed_precision(), ctx_->dtype(), device_.type());
      s = task_->train_step(*ctx_);
    }
    ctx_->update_scale();
    if (ema_) ema_->update();
    for (auto& [k, v] : s.values) window[k] = window.value(k, 0.0) + v;
    for (auto& [k, v] : s.deferred) deferred[k].push_back(v);
    window["_n"] = window.value("_n", 0) + 1;
    ++window_steps;

    if (step % log_every == 0 || step == last) {
      read_deferred();
      check_finite(step);
      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - t_window).count();
      const double its = window_steps / std::max(secs, 1e-9);
      const double n = window["_n"].get<double>();
      json row{{"step", step}, {"split", "train"}, {"lr", lr}};
      std::string line;
      for (auto& [k, v] : window.items()) {
        if (k == "_n") continue;
        row[k] = v.get<double>() / n;
        line += fmt::format("  {} {:.4f}", k, v.get<double>() / n);
      }
      row["it_per_s"] = its;
      row["examples_per_s"] = its * task_->examples_per_step() * opt_.world_size;
      row["elapsed_s"] = std::chrono::duration<double>(now - t_start).count();
      log_row(dump(row));
      if (main)
        spdlog::info("step {}/{}{}  lr {:.2e}  {:.2f} it/s  {:.0f} ex/s  ETA {}", step, total, line, lr, its,
                     its * task_->examples_per_step() * opt_.world_size, format_duration((total - step) / its));
      window = json::object();
      window_steps = 0;
      t_window = std::chrono::steady_clock::now();
    }

    bool best = false;
    if (eval_every > 0 && step % eval_every == 0 && step != total) {
      Scalars m;
      try {
        m = evaluate("val", step);
      } catch (const UsageError&) {  // held-out data found bad: the steps trained are kept
        save_checkpoint(step, false);
        if (main) spdlog::warn("checkpoint saved at step {}; fix the data and continue with --resume", step);
        throw;
      }
      t_window = std::chrono::steady_clock::now();  // evaluation time is not training throughput
      if (m.count(best_key)) {
        const double v = m[best_key];
        best = improves(v, best_, higher_better);
        if (best) best_ = v;
      }
    }
    if (sample_every > 0 && step % sample_every == 0) write_outputs();
    if (g_signal != 0) {
      save_checkpoint(step, best);
      interrupted_ = true;
      if (main) spdlog::warn("interrupted at step {}: checkpoint saved; continue with --resume --run-dir {}", step,
                             opt_.run_dir);
      break;
    }
    if (step % ckpt_every == 0 || best || step == last) save_checkpoint(step, best);
  }
  signals.reset();
  if (interrupted_ || step < total) return {};

  // The end of the run: validation picks best.pt (the last weights when the task has no
  // metric to pick by), then the test figure is reported once.
  {
    const auto note = "zoo: interrupted in the final evaluation; the checkpoints of step " + std::to_string(step) +
                      " are saved: evaluate again with --resume --run-dir " +
                      (opt_.restarts_dir.empty() ? opt_.run_dir : opt_.restarts_dir) + "\n";
    g_eval_note_size = main ? std::min(note.size(), sizeof g_eval_note) : 0;
    std::memcpy(g_eval_note, note.data(), g_eval_note_size);
  }
  SignalScope final_eval_signals(on_signal_in_final_eval);
  auto val = evaluate("val", step);
  const bool better = val.count(best_key) && improves(val[best_key], best_, higher_better);
  if (better) best_ = val[best_key];
  // A task with no metric to pick by (the GAN) keeps its last weights as best.pt, a resumed run's too.
  if (better || best_key.empty() || !fs::exists(fs::path(opt_.run_dir) / "checkpoints" / "best.pt"))
    save_checkpoint(step, true);
  auto test = evaluate("test", step);
  if (outputs_error)
    throw UsageError("samples not written: " + *outputs_error + "; the checkpoints are saved: free the path (or disk "
                     "space), and zoo eval or zoo sample reads them");
  if (log_error_)
    throw UsageError("metrics not all logged: " + *log_error_ + "; the checkpoints are saved: free the path (or disk "
                     "space); zoo eval reads them");
  return test;
}

namespace {

// The floating-point parameters and buffers of a task's networks, in a fixed order: what a
// weight average averages (integer buffers, such as a batch-norm step count, are left alone).
std::vector<torch::Tensor> float_state(Task& task) {
  std::vector<torch::Tensor> out;
  auto add = [&](torch::nn::Module& m) {
    for (auto& p : m.named_parameters()) out.push_back(p.value());
    for (auto& b : m.named_buffers())
      if (b.value().is_floating_point()) out.push_back(b.value());
  };
  add(task.model());
  for (auto& [name, module] : task.extra_modules()) add(*module);
  return out;
}

// Greedy soup (Wortsman et al. 2022, "Model soups", Algorithm 1) of the restarts in `results`,
// sorted by their validation metric, the best first: each next one joins the soup (a uniform average of the
// weights of its members) when validation of the average with it is no worse than without.
// Writes the soup to top/checkpoints/best.pt, a checkpoint like any best.pt, and returns it loaded.
std::unique_ptr<Task> greedy_soup(const fs::path& top, const std::string& key, bool higher,
                                  const std::vector<std::pair<int64_t, double>>& results, std::vector<int64_t>* kept,
                                  std::string* rows, bool main) {
  auto path_of = [&](int64_t seed) {
    return (top / "restarts" / ("seed-" + std::to_string(seed)) / "checkpoints" / "best.pt").string();
  };
  auto validate = [&](Task& t) {
    torch::NoGradGuard no_grad;
    auto m = t.evaluate("val");
    if (!m.count(key)) throw std::runtime_error("greedy soup: validation gave no " + key);
    return m.at(key);
  };
  Config cfg;
  const auto first = path_of(results.front().first);
  auto soup = load_task(first, {}, &cfg, /*runtime=*/false);
  auto live = float_state(*soup);
  std::vector<torch::Tensor> sum;
  for (auto& t : live) sum.push_back(t.detach().to(torch::kFloat64));
  double current = validate(*soup);
  *kept = {results.front().first};
  *rows += dump(json{{"soup", results.front().first}, {"split", "val"}, {key, current}, {"kept", true}}) + "\n";
  if (main) spdlog::info("greedy soup: seed {} alone, validation {} {:.4f}", results.front().first, key, current);
  for (size_t i = 1; i < results.size(); ++i) {
    const int64_t seed = results[i].first;
    auto other = load_task(path_of(seed), {}, nullptr, /*runtime=*/false);
    auto w = float_state(*other);
    if (w.size() != live.size())
      throw std::runtime_error(path_of(seed) + ": its networks differ from seed " + std::to_string(kept->front()) + "'s");
    const double n = static_cast<double>(kept->size());
    {
      torch::NoGradGuard no_grad;
      for (size_t j = 0; j < live.size(); ++j) live[j].copy_((sum[j] + w[j].to(torch::kFloat64)) / (n + 1));
    }
    const double v = validate(*soup);
    const bool keep = !improves(current, v, higher);  // no worse than the soup without it
    *rows += dump(json{{"soup", seed}, {"split", "val"}, {key, v}, {"kept", keep}}) + "\n";
    if (main)
      spdlog::info("greedy soup: with seed {} validation {} {:.4f} against {:.4f}: {}", seed, key, v, current,
                   keep ? "kept" : "left out");
    torch::NoGradGuard no_grad;
    if (keep) {
      for (size_t j = 0; j < live.size(); ++j) sum[j] += w[j].to(torch::kFloat64);
      kept->push_back(seed);
      current = v;
    } else {
      for (size_t j = 0; j < live.size(); ++j) live[j].copy_(sum[j] / n);
    }
  }
  if (main) {
    // The soup's checkpoint: the first member's config and data state with the averaged
    // weights. Those are already the EMA weights where the restarts kept an EMA, so the stored
    // config says train.ema false.
    if (cfg.get_bool("train.ema")) cfg.set("train.ema", "false", "greedy soup");
    auto archive_in = read_checkpoint(first);
    torch::serialize::OutputArchive archive;
    archive.write("config", c10::IValue(cfg.to_yaml()));
    archive.write("step", c10::IValue(checkpoint_step(archive_in)));
    archive.write("soup", c10::IValue(dump(json(*kept))));
    write_networks(*soup, archive);
    {
      torch::serialize::OutputArchive t;
      soup->save_state(t);
      archive.write("task", t);
    }
    write_checkpoint(archive, {(top / "checkpoints" / "best.pt").string()});
  }
  return soup;
}

}  // namespace

namespace {

/// Whether a run directory holds anything a run wrote besides its .lock and config.yaml: a
/// non-empty file, or a link or other entry (kept, not judged).
bool holds_output(const fs::path& dir, std::error_code& ec) {
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto status = fs::symlink_status(it->path(), ec);
    if (ec) return true;
    const auto name = it->path().filename().string();
    if (fs::is_directory(status)) {
      if (holds_output(it->path(), ec)) return true;
    } else if (!fs::is_regular_file(status) ||
               (name != ".lock" && name != "config.yaml" && fs::file_size(it->path(), ec) > 0)) {
      return true;
    }
  }
  return ec.operator bool();
}

/// An exclusive flock(2) on run_dir/.lock for as long as it lives; UsageError when another
/// process holds it.
class RunLock {
 public:
  explicit RunLock(const std::string& run_dir) : dir_(run_dir) {
    created_ = !fs::exists(run_dir);
    fs::create_directories(run_dir);
    const auto path = (fs::path(run_dir) / ".lock").string();
    for (int attempt = 0;; ++attempt) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) throw UsageError("--run-dir " + run_dir + ": cannot create " + path + " (" + std::strerror(errno) +
                                    "); give a writable run directory");
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        ::close(fd_);
        if (err == EWOULDBLOCK)
          throw UsageError("--run-dir " + run_dir + ": another zoo train is using it (it holds " + path +
                           "); wait for that one to end, or choose another --run-dir");
        throw UsageError("--run-dir " + run_dir + ": cannot lock " + path + " (" + std::strerror(err) + ")");
      }
      // The file locked must still be the one at `path` (the destructor below may have removed
      // it, with its directory, between this open and this lock): else lock the new one.
      struct stat held {}, named {};
      if (::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
          held.st_ino == named.st_ino)
        break;
      ::close(fd_);
      if (attempt == 10) throw UsageError("--run-dir " + run_dir + ": " + path + " keeps being replaced; try again");
      fs::create_directories(run_dir);
    }
  }
  ~RunLock() {
    // A run directory made here for a run refused or failed before it wrote anything of its own
    // (only the lock, its config.yaml, empty files and folders) goes again.
    std::error_code ec;
    // The .lock goes last, then the folder (only if empty): a zoo train that locks a new .lock
    // there meanwhile keeps what it writes.
    if (created_ && !holds_output(dir_, ec) && !ec) {
      std::vector<fs::path> entries;
      for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename() != ".lock") entries.push_back(it->path());
      for (const auto& e : entries)
        if (!ec) remove_tree(e.string(), ec);
      if (!ec) fs::remove(fs::path(dir_) / ".lock", ec);
      if (!ec) fs::remove(dir_, ec);
    }
    ::close(fd_);
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  std::string dir_;
  bool created_ = false;
  int fd_ = -1;
};

}  // namespace

Scalars run_training(const Config& cfg, const TrainerOptions& options, bool* interrupted) {
  *interrupted = false;
  const auto& dir = options.run_dir;
  if (dir.empty()) throw UsageError("--run-dir: empty; name a directory for the run (e.g. runs/my-run)");
  if (fs::exists(dir) && !fs::is_directory(dir))
    throw UsageError("--run-dir " + dir + ": is a file, not a directory; name a directory for the run");
  // What the directory holds: one run's step checkpoints, or restarts under restarts/.
  const bool single = !list_step_checkpoints((fs::path(dir) / "checkpoints").string()).empty();
  const bool several = fs::is_directory(fs::path(dir) / "restarts");
  if (options.resume && !single && !several) throw no_step_checkpoints(dir);  // before anything is written there
  // One trainer per run directory: a second would write the same checkpoints and delete the
  // first's (train.keep_last). The lock goes with the process, however it ends.
  std::unique_ptr<RunLock> lock;
  if (options.rank == 0) lock = std::make_unique<RunLock>(dir);
  // Where every run, or a run of restarts, writes a file: no folder there (found now, not after training).
  for (const auto& f : {fs::path(dir) / "checkpoints" / "best.pt", fs::path(dir) / "restarts.jsonl"})
    if (fs::is_directory(fs::symlink_status(f)))
      throw UsageError(f.string() + ": is a folder where this run may write a file; move it away, or use another --run-dir");
  if (!options.resume) {  // a new run never replaces the checkpoints of an earlier one
    const auto ckpt = fs::path(dir) / "checkpoints";
    if (!list_step_checkpoints(ckpt.string()).empty() || fs::exists(ckpt / "best.pt") ||
        fs::exists(fs::path(dir) / "restarts"))
      throw UsageError("--run-dir " + dir +
                       ": already holds a run's checkpoints; continue it with --resume, or "
                       "choose another --run-dir (or delete that one)");
  }
  const int64_t restarts = cfg.get_int("train.restarts");
  if (cfg.get_int("train.seed") > std::numeric_limits<int64_t>::max() - (restarts - 1))
    throw UsageError("train.seed: " + std::to_string(cfg.get_int("train.seed")) + " + train.restarts - 1 overflows a "
                     "64-bit seed; give a smaller train.seed");
  if (options.resume) {  // a run resumes as what it is: one run, or restarts under restarts/
    if (restarts > 1 && single && !several)
      throw UsageError("--resume: " + dir + " holds one run (train.restarts 1), not restarts; resume it with "
                       "train.restarts=1, or start the restarts with another --run-dir");
    if (restarts == 1 && several && !single)
      throw UsageError("--resume: " + dir + " holds restarts (restarts/seed-S); resume them with the train.restarts they "
                       "were started with (its config.yaml says), or start one run with another --run-dir");
    if (restarts > 1 && several) {  // the same seeds: another train.seed would start new restarts beside the old
      const int64_t first = cfg.get_int("train.seed");
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(fs::path(dir) / "restarts", ec)) {
        const auto name = e.path().filename().string();
        const auto digits = name.rfind("seed-", 0) == 0 ? name.substr(5) : std::string();
        if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
        const auto seed = std::stoll(digits);
        if (seed < first || seed - first >= restarts)
          throw UsageError("--resume: " + dir + " holds the restart of train.seed " + digits + ", outside train.seed " +
                           std::to_string(first) + " to " + std::to_string(first + restarts - 1) +
                           "; resume with the train.seed and train.restarts the run was started with (its config.yaml "
                           "says), or start new restarts with another --run-dir");
      }
    }
  }
  if (restarts == 1) {
    Trainer trainer(cfg, options);
    auto m = trainer.run();
    *interrupted = trainer.interrupted();
    return m;
  }
  // Devlin et al. 2018, Sec. 4.1: fine-tuning was sometimes unstable on small datasets, so they
  // ran several random restarts (the same pretrained checkpoint; other data shuffling and
  // classifier initialization) and selected the best model on the dev set.
  const auto top = fs::path(options.run_dir);
  fs::create_directories(top / "checkpoints");
  if (options.rank == 0)
    for (const auto& d : {top, top / "checkpoints"}) remove_stale_temporaries(d.string());
  if (!options.resume && options.rank == 0) atomic_write((top / "config.yaml").string(), cfg.to_yaml());
  const int64_t seed0 = cfg.get_int("train.seed");
  std::string key;
  bool higher = true;
  std::vector<std::pair<int64_t, double>> results;  // (seed, best validation value)
  std::string rows;
  for (int64_t k = 0; k < restarts; ++k) {
    const int64_t seed = seed0 + k;
    Config c = cfg;
    c.set("train.seed", std::to_string(seed), "train.restarts");
    c.set("train.restarts", "1", "train.restarts");
    TrainerOptions o = options;
    o.run_dir = (top / "restarts" / ("seed-" + std::to_string(seed))).string();
    o.restarts_dir = options.run_dir;
    // --resume continues each restart from its own newest checkpoint; a finished one only
    // evaluates again. Restarts not begun yet start from scratch.
    o.resume = options.resume && !list_step_checkpoints((fs::path(o.run_dir) / "checkpoints").string()).empty();
    if (options.rank == 0) spdlog::info("restart {} of {}: train.seed {} -> {}", k + 1, restarts, seed, o.run_dir);
    Trainer trainer(c, o);
    std::tie(key, higher) = trainer.task().best_metric();
    if (key.empty())
      throw UsageError("train.restarts: task " + cfg.task() +
                       " has no validation metric to choose a restart by; set train.restarts=1");
    bool finished = false;
    try {
      finished = !trainer.run().empty();
    } catch (const DivergedError& e) {  // an unstable seed is left out, as a worse one would be
      if (options.rank == 0) spdlog::warn("restart seed {} left out: {}", seed, e.what());
      rows += dump(json{{"seed", seed}, {"run_dir", o.run_dir}, {"split", "val"}, {"diverged", true}}) + "\n";
      continue;
    }
    // On --resume, written once the first restart has restored (a refused --resume leaves the run as it was).
    if (options.resume && k == 0 && options.rank == 0) atomic_write((top / "config.yaml").string(), cfg.to_yaml());
    if (trainer.interrupted()) {
      *interrupted = true;
      if (options.rank == 0)
        spdlog::warn("continue every restart with --resume --run-dir {}", options.run_dir);
      return {};
    }
    if (!finished) return {};  // stopped before train.steps (stop_after)
    const auto value = trainer.best_value();
    if (!value)
      throw std::runtime_error(o.run_dir + ": validation gave no " + key + " to choose a restart by");
    results.emplace_back(seed, *value);
    rows += dump(json{{"seed", seed}, {"run_dir", o.run_dir}, {"split", "val"}, {key, *value}}) + "\n";
    if (options.rank == 0) spdlog::info("restart seed {}: best validation {} {:.4f}", seed, key, *value);
  }
  if (results.empty())
    throw DivergedError("train.restarts: every restart diverged; lower optim.lr (or set train.grad_clip)");
  // Best validation first; a tie keeps seed order (the first seed wins).
  std::stable_sort(results.begin(), results.end(), [&](const auto& a, const auto& b) {
    return higher ? a.second > b.second : a.second < b.second;
  });
  const auto [chosen, chosen_value] = results.front();
  const auto best = (top / "checkpoints" / "best.pt").string();
  const bool soup = cfg.get_string("train.restarts_select") == "soup";
  std::vector<int64_t> kept{chosen};
  std::unique_ptr<Task> task;
  if (soup) {
    task = greedy_soup(top, key, higher, results, &kept, &rows, options.rank == 0);
  } else {
    const auto from = top / "restarts" / ("seed-" + std::to_string(chosen)) / "checkpoints" / "best.pt";
    if (options.rank == 0) {
      std::ifstream in(from, std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      if (!in || bytes.str().empty()) throw std::runtime_error(from.string() + ": cannot read the chosen checkpoint");
      atomic_write(best, bytes.str());
    }
    task = load_task(best, {}, nullptr, /*runtime=*/false);
  }
  Scalars test;
  {
    torch::NoGradGuard no_grad;
    test = task->evaluate("test");
  }
  json row{{"seed", kept.front()}, {"split", "test"}, {"chosen", true}, {"checkpoint", best}};
  if (soup) row["soup"] = kept;
  for (auto& [k, v] : test) row[k] = v;
  rows += dump(row) + "\n";
  if (options.rank == 0) {
    atomic_write((top / "restarts.jsonl").string(), rows);
    if (soup)
      spdlog::info("greedy soup of {} of {} restarts (seeds {}) -> {}", kept.size(), restarts, dump(json(kept)), best);
    else
      spdlog::info("validation chose seed {} ({} {:.4f}) of {} restarts -> {}", chosen, key, chosen_value, restarts,
                   best);
  }
  test["seed"] = static_cast<double>(kept.front());
  if (soup) test["soup_size"] = static_cast<double>(kept.size());
  return test;
}

namespace {
// Writes `task`'s networks to `out` as a checkpoint to evaluate, not to resume: `cfg`, the step
// and the task state (vocabulary, data position) of the checkpoint `source` as they are (no data
// need be read), and `note` (a key naming where the weights came from); returns that step. Like a
// soup's best.pt, the weights are already the EMA's where the run kept one, so the stored config
// says train.ema false.
int64_t write_weights(Task& task, Config cfg, torch::serialize::InputArchive& source,
                      const std::pair<std::string, std::string>& note, const std::string& out, const std::string& who) {
  if (cfg.get_bool("train.ema")) cfg.set("train.ema", "false", who);
  const auto step = checkpoint_step(source);
  torch::serialize::OutputArchive archive;
  archive.write("config", c10::IValue(cfg.to_yaml()));
  archive.write("step", c10::IValue(step));
  archive.write(note.first, c10::IValue(note.second));
  write_networks(task, archive);
  if (torch::serialize::InputArchive t; source.try_read("task", t)) {
    torch::serialize::OutputArchive o;
    copy_archive(t, o);
    archive.write("task", o);
  }
  try {
    write_checkpoint(archive, {out});
  } catch (const UsageError&) {
    throw;
  } catch (const std::runtime_error& e) {  // atomic_write's: the folder or file cannot be written
    throw UsageError("--out " + out + ": cannot write it (" + e.what() + "); give a writable path");
  }
  return step;
}
}  // namespace

AverageResult average_checkpoints(const std::vector<std::string>& inputs, const std::string& out) {
  if (inputs.size() < 2)
    throw UsageError("zoo average: " + std::to_string(inputs.size()) + " checkpoint given; average at least two");
  for (size_t i = 0; i < inputs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (std::error_code ec; inputs[i] == inputs[j] || fs::equivalent(inputs[i], inputs[j], ec))
        throw UsageError("zoo average: " + inputs[i] + " is given twice; give each checkpoint once");
  // The last checkpoint gives the config, the step and the data state; each other must be of the
  // same task with the same fixed keys (the shapes of the weights and what they mean).
  Config cfg;
  const auto& base_path = inputs.back();
  torch::serialize::InputArchive source;  // its step and task state go into the average
  auto base = load_task(base_path, {}, &cfg, /*runtime=*/true, &source);
  auto live = float_state(*base);
  std::vector<torch::Tensor> sum;
  for (auto& t : live) sum.push_back(t.detach().to(torch::kFloat64));
  // The same weights twice (best.pt beside the step checkpoint it copies) would count twice.
  auto fingerprint = [](const std::vector<torch::Tensor>& w) {
    std::vector<double> f;
    for (auto& t : w) {
      auto d = t.detach().to(torch::kFloat64);
      f.push_back(d.sum().item<double>());
      f.push_back(d.square().sum().item<double>());
    }
    return f;
  };
  std::vector<std::vector<double>> seen{fingerprint(live)};
  std::vector<std::string> seen_path{base_path};
  AverageResult result;
  for (size_t i = 0; i + 1 < inputs.size(); ++i) {
    Config other_cfg;
    auto other = load_task(inputs[i], {}, &other_cfg, /*runtime=*/false);
    if (other_cfg.task() != cfg.task())
      throw UsageError("zoo average: " + inputs[i] + " holds a " + other_cfg.task() + " run and " + base_path + " a " +
                       cfg.task() + " run; average checkpoints of one run");
    if (const auto key = changed_fixed_key(other_cfg, cfg); !key.empty())
      throw UsageError("zoo average: " + inputs[i] + " was trained with " + key + "=" + show_value(other_cfg.value(key)) +
                       " and " + base_path + " with " + show_value(cfg.value(key)) + "; average checkpoints of one run");
    auto w = float_state(*other);
    bool same = w.size() == live.size();
    for (size_t j = 0; same && j < w.size(); ++j) same = w[j].sizes() == live[j].sizes();
    if (!same)
      throw UsageError("zoo average: the networks of " + inputs[i] + " and " + base_path +
                       " differ in shape; average checkpoints of one run");
    const auto f = fingerprint(w);
    for (size_t k = 0; k < seen.size(); ++k)
      if (seen[k] == f)
        throw UsageError("zoo average: " + inputs[i] + " holds the same weights as " + seen_path[k] +
                         " (best.pt is a copy of a step checkpoint, and steps at learning rate 0 change no weight); "
                         "list the checkpoints to average, each with weights of its own");
    seen.push_back(f);
    seen_path.push_back(inputs[i]);
    for (size_t j = 0; j < w.size(); ++j) sum[j] += w[j].detach().to(torch::kFloat64);
  }
  {
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < live.size(); ++j) live[j].copy_(sum[j] / static_cast<double>(inputs.size()));
  }
  result.step = write_weights(*base, cfg, source, {"average", dump(json(inputs))}, out, "zoo average");
  result.task = std::move(base);
  return result;
}

int64_t export_checkpoint(const std::string& checkpoint, const std::string& out) {
  Config cfg;
  torch::serialize::InputArchive source;
  auto task = load_task(checkpoint, {}, &cfg, /*runtime=*/true, &source);
  return write_weights(*task, cfg, source, {"exported_from", checkpoint}, out, "zoo export");
}

std::unique_ptr<Task> load_task(const std::string& checkpoint, const std::vector<std::string>& overrides,
                                Config* config_out, bool runtime, torch::serialize::InputArchive* archive_out) {
  return load_task(read_checkpoint(checkpoint), checkpoint, overrides, config_out, runtime, archive_out);
}

std::unique_ptr<Task> load_task(torch::serialize::InputArchive archive, const std::string& checkpoint,
                                const std::vector<std::string>& overrides, Config* config_out, bool runtime,
                                torch::serialize::InputArchive* archive_out) {
  const auto stored = checkpoint_config(archive, checkpoint);
  auto cfg = Config::from_yaml(stored, checkpoint + " (stored config)", overrides);
  const auto trained = Config::from_yaml(stored, checkpoint + " (stored config)");
  // The weights are for the config they were trained with.
  if (const auto key = changed_fixed_key(cfg, trained); !key.empty())
    throw UsageError("--set " + key + "=" + show_value(cfg.value(key)) + ": " + checkpoint + " was trained with " + key +
                     "=" + show_value(trained.value(key)) + " and its weights are for that; drop the --set, or train a "
                     "new run with it");
  // A run trained on a GPU is read where there is none on the CPU, as torch.load(map_location=
  // "cpu") would; an explicit --set train.device=cuda still says it is missing.
  const bool device_set = std::any_of(overrides.begin(), overrides.end(),
                                      [](const std::string& o) { return o.rfind("train.device=", 0) == 0; });
  if (!device_set && cfg.get_string("train.device").rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    cfg.set("train.device", "cpu", checkpoint + " (no CUDA device here)");
    spdlog::info("{} was trained on {}; this machine has no CUDA device, so it runs on the cpu", checkpoint,
                 trained.get_string("train.device"));
  }
  const auto device = resolve_device(cfg.get_string("train.device"));
  if (runtime) apply_runtime(cfg);
  torch::serialize::InputArchive state;
  const bool has_state = archive.try_read("task", state);
  std::unique_ptr<Task> task;
  try {
    task = make_task(cfg, TaskContext{device, 0, 1, has_state ? &state : nullptr});
  } catch (const UsageError& e) {
    throw UsageError(checkpoint + ": " + e.what());
  }
  load_module(task->model(), archive, "model", checkpoint);
  for (auto& [name, module] : task->extra_modules()) load_module(*module, archive, "modules/" + name, checkpoint);
  if (cfg.get_bool("train.ema")) {
    EMA ema(task->model(), cfg.get_float("train.ema_decay"));
    ema.load(archive, checkpoint);
    ema.swap();  // the model now holds the averaged weights
  }
  task->model().eval();
  if (config_out) *config_out = cfg;
  if (archive_out) *archive_out = std::move(archive);
  return task;
}

}  // namespace zoo
