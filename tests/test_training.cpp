// Trainer and checkpoints on real Fashion-MNIST: round trip, atomicity, resume
// equivalence, bad files, and a short run that must clearly learn.
#include "tests/catch.h"

#include <ATen/autocast_mode.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "helpers.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/data/fashion_mnist.h"
#include "train/data/sampler.h"
#include "train/optim.h"
#include "models/vit.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

zoo::Config tiny(int steps, std::vector<std::string> sets = {}) {
  return zoo::Config::from_yaml(zoo::test::tiny_vit_yaml(steps), "tiny config", sets);
}

using zoo::test::train_losses;
using zoo::test::q;

/// Runs `a` and `b` logged the same `n` training losses at the same steps: bit for bit, or with
/// `epsilon` > 0 within that relative difference.
void check_same_losses(const std::string& a_dir, const std::string& b_dir, size_t n, double epsilon = 0) {
  auto a = train_losses(a_dir), b = train_losses(b_dir);
  REQUIRE(a.size() == n);
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << a[i].first);
    CHECK(a[i].first == b[i].first);
    if (epsilon == 0) CHECK(a[i].second == b[i].second);
    else CHECK(a[i].second == Approx(b[i].second).epsilon(epsilon));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("learning-rate schedule: linear warmup, then cosine to min_lr", "[trainer]") {
  auto cfg = tiny(10, {"optim.lr=1.0", "optim.min_lr=0.1", "optim.warmup_steps=2"});
  CHECK(zoo::learning_rate(cfg, 1) == Approx(0.5));
  CHECK(zoo::learning_rate(cfg, 2) == Approx(1.0));
  CHECK(zoo::learning_rate(cfg, 6) == Approx(0.1 + 0.9 * 0.5));  // halfway through the cosine
  CHECK(zoo::learning_rate(cfg, 10) == Approx(0.1));
  cfg.set("optim.schedule", "constant");
  CHECK(zoo::learning_rate(cfg, 7) == Approx(1.0));
}

TEST_CASE("learning-rate schedule: a linear cooldown to min_lr ends the inverse-sqrt and constant schedules", "[trainer]") {
  auto cfg = tiny(10, {"optim.lr=1.0", "optim.min_lr=0.1", "optim.warmup_steps=2", "optim.schedule=inverse_sqrt",
                       "optim.cooldown_steps=4"});
  const double at6 = std::sqrt(2.0 / 6.0);  // where the cooldown takes over
  CHECK(zoo::learning_rate(cfg, 2) == Approx(1.0));
  CHECK(zoo::learning_rate(cfg, 5) == Approx(std::sqrt(2.0 / 5.0)));
  CHECK(zoo::learning_rate(cfg, 6) == Approx(at6));
  CHECK(zoo::learning_rate(cfg, 8) == Approx(0.1 + (at6 - 0.1) * 0.5));
  CHECK(zoo::learning_rate(cfg, 10) == Approx(0.1));
  // Before its cooldown a longer run has the same rates, so a run can branch into a cooldown.
  auto longer = tiny(40, {"optim.lr=1.0", "optim.warmup_steps=2", "optim.schedule=inverse_sqrt"});
  CHECK(zoo::learning_rate(longer, 6) == zoo::learning_rate(cfg, 6));
  // With no warmup the cooldown may span the whole run, from the rate of step 1.
  auto whole = tiny(10, {"optim.lr=1.0", "optim.warmup_steps=0", "optim.schedule=inverse_sqrt", "optim.cooldown_steps=10"});
  CHECK(zoo::learning_rate(whole, 1) == Approx(0.9));
  CHECK(zoo::learning_rate(whole, 5) == Approx(0.5));
  cfg.set("optim.schedule", "constant");
  CHECK(zoo::learning_rate(cfg, 6) == Approx(1.0));
  CHECK(zoo::learning_rate(cfg, 9) == Approx(0.1 + 0.9 * 0.25));
  cfg.set("optim.schedule", "cosine");
  CHECK_THROWS_WITH(zoo::Trainer(cfg, {}), Contains("optim.cooldown_steps: the cosine schedule decays by itself"));
  cfg.set("optim.schedule", "constant");
  cfg.set("optim.cooldown_steps", "9");
  CHECK_THROWS_WITH(zoo::Trainer(cfg, {}), Contains("optim.cooldown_steps: 9 is more than the 8 steps after warmup"));
}

TEST_CASE("train.precision=bf16 on the CPU: autocast's bf16 products in the step, its losses near fp32's", "[trainer]") {
  const auto a = torch::randn({8, 8}), b = torch::randn({8, 8});
  {
    zoo::Autocast outer(true, torch::kBFloat16, c10::DeviceType::CPU);
    CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
    {
      zoo::Autocast off(false, torch::kBFloat16, c10::DeviceType::CPU);  // disabled: changes nothing
      CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
    }
    CHECK(torch::mm(a, b).scalar_type() == torch::kBFloat16);
  }
  CHECK(torch::mm(a, b).scalar_type() == torch::kFloat);  // the scope restores what it found
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  CHECK_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
#else
  CHECK_FALSE(at::autocast::is_cpu_enabled());
#endif

  // The same 6 steps in fp32 and in bf16: not the same numbers (bf16 did run), but close.
  auto fp32 = zoo::test::scratch("precision-fp32"), bf16 = zoo::test::scratch("precision-bf16");
  const std::vector<std::string> sets{"train.log_every=1", "train.eval_every=0"};
  auto with = [&](const std::string& p) {
    auto s = sets;
    s.push_back("train.precision=" + p);
    return tiny(6, s);
  };
  zoo::Trainer(with("fp32"), {fp32}).run();
  zoo::Trainer(with("bf16"), {bf16}).run();
  auto x = train_losses(fp32), y = train_losses(bf16);
  REQUIRE(x.size() == 6);
  REQUIRE(y.size() == 6);
  bool differ = false;
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("step " << x[i].first << ": fp32 " << x[i].second << ", bf16 " << y[i].second);
    CHECK(y[i].second == Approx(x[i].second).epsilon(0.03));
    differ = differ || x[i].second != y[i].second;
  }
  CHECK(differ);

  // float16 autocast is CUDA's alone here.
  CHECK_THROWS_WITH(zoo::Trainer(tiny(6, {"train.device=cpu", "train.precision=fp16"}), {zoo::test::scratch("fp16")}),
                    Contains("train.precision: fp16 needs a CUDA device") && Contains("use bf16 or fp32"));
}

TEST_CASE("cpuinfo_has_bf16: native bfloat16 read from the feature lists of /proc/cpuinfo", "[trainer]") {
  // Abridged from real files: a Zen 4 EPYC (avx512_bf16), a Sapphire Rapids Xeon (amx_bf16 and
  // avx512_bf16), an AVX2-only EPYC, a Neoverse V1 (Arm, bf16) and a Cortex-A72 (Arm, none).
  const std::string zen4 = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 "
                           "avx512_vnni\nbugs\t\t: sysret_ss_attrs\n";
  const std::string spr = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\nvmx flags\t: vnmi ept\n";
  const std::string avx2 = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma f16c bmi2\n"
                           "vmx flags\t: avx512_bf16\n";  // not the CPU's feature list
  const std::string v1 = "processor\t: 0\nFeatures\t: fp asimd evtstrm sve i8mm bf16 dcpodp\nCPU part\t: 0xd40\n";
  const std::string a72 = "Features\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n";
  CHECK(zoo::cpuinfo_has_bf16(zen4));
  CHECK(zoo::cpuinfo_has_bf16(spr));
  CHECK_FALSE(zoo::cpuinfo_has_bf16(avx2));
  CHECK(zoo::cpuinfo_has_bf16(v1));
  CHECK_FALSE(zoo::cpuinfo_has_bf16(a72));
  CHECK_FALSE(zoo::cpuinfo_has_bf16("flags\t\t: avx512_bf16x sbf16\n"));  // whole words only
  CHECK_FALSE(zoo::cpuinfo_has_bf16("model name\t: bf16 avx512_bf16\n"));  // only flags and Features count
  CHECK_FALSE(zoo::cpuinfo_has_bf16(""));
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))  // mallinfo2
TEST_CASE("keep_freed_memory: a freed 16 MiB block stays with the process, from the heap, not mmap", "[trainer]") {
  if (zoo::malloc_left_to_user()) {
    CHECK_FALSE(zoo::keep_freed_memory());  // the user's settings win
    WARN("malloc settings in the environment (MALLOC_*_ or ZOO_KEEP_FREED_MEMORY=0): the heap checks did not run");
    return;
  }
  REQUIRE(zoo::keep_freed_memory());
  const auto mapped = ::mallinfo2().hblkhd;  // bytes in blocks malloc took by mmap
  void* block = std::malloc(16 << 20);
  REQUIRE(block);
  static_cast<volatile char*>(block)[0] = 1;
  CHECK(::mallinfo2().hblkhd == mapped);  // glibc's default: a new 16 MiB mmap (above 128 KiB)
  const auto heap = ::mallinfo2().arena;  // bytes the main heap holds, in use or free
  std::free(block);
  // Kept: glibc's default gives a free top of the heap above 128 KiB back to the system.
  CHECK(::mallinfo2().arena == heap);
  CHECK(::mallinfo2().fordblks >= size_t{16} << 20);
}
#endif

TEST_CASE("EMA follows theta_ema <- d theta_ema + (1 - d) theta and swaps in and out", "[trainer]") {
  torch::nn::Linear lin(2, 1);
  zoo::EMA ema(*lin, 0.5);
  auto w0 = lin->weight.detach().clone();
  {
    torch::NoGradGuard g;
    lin->weight.add_(2.0);
  }
  ema.update();
  ema.swap();
  CHECK(torch::allclose(lin->weight, w0 + 1.0));
  ema.swap();
  CHECK(torch::allclose(lin->weight, w0 + 2.0));
  // At decay 1 the average, which evaluation and best.pt use, never leaves the initial weights:
  // refused for a run with EMA; without EMA the key means nothing (and old checkpoints still load).
  auto dir = zoo::test::scratch("ema-decay");
  CHECK_THROWS_WITH(zoo::Trainer(tiny(4, {"train.ema=true", "train.ema_decay=1"}), {dir}),
                    Contains("train.ema_decay: must be below 1 while train.ema is on"));
  CHECK_NOTHROW(zoo::Trainer(tiny(4, {"train.ema=false", "train.ema_decay=1"}), {dir}));
}

namespace {

// Two copies of one small network with identical weights. `extra` is used only on steps not
// divisible by 3, so its gradients are sometimes undefined and its step count falls behind.
struct Net : torch::nn::Module {
  torch::nn::Linear l1{nullptr}, l2{nullptr}, extra{nullptr};
  Net() {
    l1 = register_module("l1", torch::nn::Linear(5, 7));
    l2 = register_module("l2", torch::nn::Linear(7, 3));
    extra = register_module("extra", torch::nn::Linear(3, 2));
  }
  void backward(const torch::Tensor& x, int step) {
    auto y = l2(torch::gelu(l1(x)));
    auto loss = y.pow(2).mean();
    if (step % 3 != 0) loss = loss + extra(y).pow(2).mean();
    loss.backward();
  }
};

struct Twin {
  std::shared_ptr<Net> a = std::make_shared<Net>(), b = std::make_shared<Net>();
  Twin() {
    torch::NoGradGuard g;
    auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  void backward(const torch::Tensor& x, int step) {
    for (auto* n : {a.get(), b.get()}) {
      for (auto& p : n->parameters()) p.mutable_grad() = torch::Tensor();  // undefined until backward
      n->backward(x, step);
    }
  }
};

template <class Ours, class Theirs, class Options>
void check_same_steps(const Options& options) {
  torch::manual_seed(0);
  Twin t;
  Ours ours(t.a->parameters(), options);
  Theirs theirs(t.b->parameters(), options);
  for (int step = 1; step <= 7; ++step) {
    auto x = torch::randn({4, 5});
    t.backward(x, step);  // at steps 3 and 6 `extra` has no gradient and takes no step
    ours.step();
    theirs.step();
    auto pa = t.a->parameters(), pb = t.b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) REQUIRE(torch::equal(pa[i], pb[i]));
  }
  // The state is torch::optim's: ours saved, theirs loads it, and the two continue as one.
  auto path = zoo::test::scratch("optim-state") + "/state.pt";
  torch::save(ours, path);
  Theirs reloaded(t.a->parameters(), options);
  torch::load(reloaded, path);
  fs::remove(path);
  auto x = torch::randn({4, 5});
  t.backward(x, 1);
  reloaded.step();
  theirs.step();
  auto pa = t.a->parameters(), pb = t.b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) CHECK(torch::equal(pa[i], pb[i]));
}

}  // namespace

TEST_CASE("multi-tensor Adam and AdamW take torch::optim's steps bit for bit, and share its state", "[optim]") {
  SECTION("AdamW, decoupled weight decay") {
    check_same_steps<zoo::MultiTensorAdamW, torch::optim::AdamW>(
        torch::optim::AdamWOptions(3e-2).betas({0.9, 0.98}).eps(1e-9).weight_decay(0.05));
  }
  SECTION("Adam, L2 weight decay") {
    check_same_steps<zoo::MultiTensorAdam, torch::optim::Adam>(
        torch::optim::AdamOptions(3e-2).betas({0.9, 0.98}).eps(1e-9).weight_decay(0.01));
  }
  SECTION("Adam, no weight decay") {
    check_same_steps<zoo::MultiTensorAdam, torch::optim::Adam>(torch::optim::AdamOptions(1e-3));
  }
}

TEST_CASE("optim.decay_1d=false: weight decay acts on matrices and kernels, not on biases and gains", "[optim]") {
  for (const char* name : {"adamw", "adam", "sgd"})
    for (bool decay_1d : {true, false}) {
      CAPTURE(name, decay_1d);
      torch::manual_seed(0);
      torch::nn::Linear lin(3, 2);
      torch::nn::LayerNorm norm(torch::nn::LayerNormOptions({2}));
      std::vector<torch::Tensor> params = lin->parameters();
      for (auto& p : norm->parameters()) params.push_back(p);
      auto cfg = tiny(1, {std::string("optim.name=") + name, "optim.lr=0.1", "optim.weight_decay=0.5",
                          std::string("optim.decay_1d=") + (decay_1d ? "true" : "false")});
      auto opt = zoo::make_optimizer(cfg, params);
      CHECK(opt->param_groups().size() == (decay_1d ? 1u : 2u));
      for (auto& group : opt->param_groups()) CHECK(group.options().get_lr() == Approx(0.1));
      std::vector<torch::Tensor> before;
      for (auto& p : params) {
        before.push_back(p.detach().clone());
        p.mutable_grad() = torch::zeros_like(p);  // no gradient: only the decay moves a parameter
      }
      opt->step();
      for (size_t i = 0; i < params.size(); ++i) {
        CAPTURE(i);
        const bool decayed = decay_1d || params[i].dim() >= 2;
        // AdamW: p (1 - lr wd). Adam and SGD: the L2 term wd p is the gradient, and Adam's first
        // step moves each element by lr against its sign; SGD's by lr wd p.
        torch::Tensor expected = before[i];
        if (decayed) {
          if (std::string(name) == "adamw") expected = before[i] * (1 - 0.1 * 0.5);
          else if (std::string(name) == "adam") expected = before[i] - 0.1 * torch::sign(before[i]);
          else expected = before[i] - 0.1 * 0.5 * before[i];
        }
        CHECK(torch::allclose(params[i], expected, 1e-5, 1e-6));
      }
      // The groups are torch::optim's: the state of a two-group optimizer saves and loads. A second
      // step from the loaded state matches the original's; from a fresh optimizer (its moments,
      // momentum and step count start over) it does not.
      auto path = zoo::test::scratch("optim-groups") + "/state.pt";
      torch::save(*opt, path);
      auto copy = [&] {
        std::vector<torch::Tensor> out;
        for (auto& p : params) out.push_back(p.detach().clone().requires_grad_(true));
        return out;
      };
      auto second_step = [&](torch::optim::Optimizer& o, std::vector<torch::Tensor>& ps) {
        for (auto& p : ps) p.mutable_grad() = torch::linspace(-1, 1, p.numel()).view_as(p);
        o.step();
      };
      auto loaded_params = copy(), fresh_params = copy();
      auto loaded = zoo::make_optimizer(cfg, loaded_params), fresh = zoo::make_optimizer(cfg, fresh_params);
      torch::load(*loaded, path);
      REQUIRE(loaded->param_groups().size() == opt->param_groups().size());
      second_step(*opt, params);
      second_step(*loaded, loaded_params);
      second_step(*fresh, fresh_params);
      bool all_equal = true, fresh_differs = false;
      for (size_t i = 0; i < params.size(); ++i) {
        all_equal = all_equal && torch::equal(params[i], loaded_params[i]);
        fresh_differs = fresh_differs || !torch::equal(params[i], fresh_params[i]);
      }
      CHECK(all_equal);
      CHECK(fresh_differs);  // the check above can fail: the state (moments, momentum, step count) matters
    }
}

TEST_CASE("clip_grad_norm scales the gradients as torch::nn::utils::clip_grad_norm_", "[optim]") {
  for (double max_norm : {0.05, 1e3}) {  // clipping, and a norm already below the bound
    torch::manual_seed(1);
    Twin t;
    auto x = torch::randn({4, 5});
    t.backward(x, 1);
    double norm = 0;
    for (auto& p : t.b->parameters()) norm += p.grad().pow(2).sum().item<double>();
    zoo::clip_grad_norm(t.a->parameters(), max_norm);
    torch::nn::utils::clip_grad_norm_(t.b->parameters(), max_norm);
    auto pa = t.a->parameters(), pb = t.b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) CHECK(torch::equal(pa[i].grad(), pb[i].grad()));
    double clipped = 0;
    for (auto& p : t.a->parameters()) clipped += p.grad().pow(2).sum().item<double>();
    CHECK(std::sqrt(clipped) == Approx(std::min(std::sqrt(norm), max_norm)).epsilon(1e-4));
  }
}

TEST_CASE("random erasing: one rectangle of noise, 2-40% of the image, aspect 0.3-3.3, at rate p", "[data]") {
  auto set = zoo::load_fashion_mnist(zoo::test::data_root(), "train", 5000, 2000);
  const auto& x = set.images;
  torch::manual_seed(0);
  CHECK(torch::equal(zoo::random_erasing(x, 0.0), x));
  torch::manual_seed(3);
  auto out = zoo::random_erasing(x, 0.5);
  torch::manual_seed(3);
  CHECK(torch::equal(zoo::random_erasing(x, 0.5), out));  // the CPU generator's seed fixes it

  int64_t erased = 0;
  double noise_sum = 0, noise_n = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto changed = (out[i][0] != x[i][0]).nonzero();  // (K, 2): row, column
    if (changed.size(0) == 0) continue;
    ++erased;
    const auto y0 = changed.select(1, 0).min().item<int64_t>(), y1 = changed.select(1, 0).max().item<int64_t>() + 1;
    const auto x0 = changed.select(1, 1).min().item<int64_t>(), x1 = changed.select(1, 1).max().item<int64_t>() + 1;
    const double area = static_cast<double>((y1 - y0) * (x1 - x0)) / (28.0 * 28.0);
    const double aspect = static_cast<double>(y1 - y0) / static_cast<double>(x1 - x0);
    INFO("image " << i << ": rows " << y0 << "-" << y1 << ", columns " << x0 << "-" << x1);
    CHECK(area >= 0.015);  // 2% and 40% of 784 pixels, give or take the rounding of each side
    CHECK(area <= 0.43);
    CHECK(aspect >= 0.25);
    CHECK(aspect <= 4.0);
    auto box = out[i][0].slice(0, y0, y1).slice(1, x0, x1);
    CHECK(box.min().item<float>() >= 0.0f);
    CHECK(box.max().item<float>() <= 1.0f);
    CHECK(changed.size(0) >= box.numel() * 9 / 10);  // noise, not the image, over the whole box
    noise_sum += box.sum().item<double>(), noise_n += static_cast<double>(box.numel());
    // Outside the box nothing moved.
    auto outside = torch::ones({28, 28}, torch::kBool);
    outside.slice(0, y0, y1).slice(1, x0, x1).fill_(false);
    CHECK(torch::equal(out[i][0].masked_select(outside), x[i][0].masked_select(outside)));
  }
  CHECK(static_cast<double>(erased) / 2000.0 == Approx(0.5).margin(0.05));
  CHECK(noise_sum / noise_n == Approx(0.5).margin(0.02));  // uniform in [0, 1]
}

TEST_CASE("checkpoint round trip rebuilds the model from the file alone", "[checkpoint]") {
  auto dir = zoo::test::scratch("roundtrip");
  zoo::Trainer trainer(tiny(12, {"train.ema=false"}), {dir});
  trainer.run();
  auto path = dir + "/checkpoints/" + zoo::step_checkpoint_name(12);
  REQUIRE(fs::exists(path));
  REQUIRE(fs::exists(dir + "/checkpoints/best.pt"));
  REQUIRE(fs::exists(dir + "/config.yaml"));
  // Alone: copied out of its run folder, away from config.yaml and the other checkpoints.
  const auto alone = zoo::test::scratch("roundtrip-alone") + "/model.pt";
  fs::copy_file(path, alone);
  auto task = zoo::load_task(alone, {});
  auto x = torch::rand({3, 1, 28, 28});
  trainer.task().model().eval();
  torch::NoGradGuard g;
  auto a = trainer.task().model().as<zoo::ViTImpl>()->forward(x);
  auto b = task->model().as<zoo::ViTImpl>()->forward(x);
  CHECK(torch::equal(a, b));
  auto archive = zoo::read_checkpoint(path);
  CHECK(zoo::checkpoint_step(archive) == 12);
  CHECK_THAT(zoo::checkpoint_config(archive, path), Contains("task: vit_fashion_mnist"));
  // Written at steps 4, 8 and 12; keep_last = 2: only the two newest step checkpoints stay.
  CHECK(zoo::list_step_checkpoints(dir + "/checkpoints") ==
        std::vector<std::string>{dir + "/checkpoints/" + zoo::step_checkpoint_name(8), path});
}

TEST_CASE("a checkpoint written on a GPU reads on a machine without one", "[checkpoint]") {
  auto dir = zoo::test::scratch("gpuckpt");
  zoo::Trainer trainer(tiny(4, {"train.ema=false"}), {dir});
  trainer.run();
  const auto cpu = dir + "/checkpoints/" + zoo::step_checkpoint_name(4), gpu = dir + "/gpu.pt";
  // The file a cuda run writes: every storage's location 'cuda:0' and train.device cuda in its config
  // (the pickle's strings rewritten; locations and the config are BINUNICODE strings).
  auto py = zoo::test::run(
      "python3 -c \"import sys, re, struct, zipfile, pickletools\n"
      "src, dst = zipfile.ZipFile(sys.argv[1]), zipfile.ZipFile(sys.argv[2], 'w')\n"
      "def edit(b):\n"
      "  out, at, n = b'', 0, 0\n"
      "  for op, arg, pos in pickletools.genops(b):\n"
      "    if op.name != 'BINUNICODE': continue\n"
      "    new = 'cuda:0' if arg == 'cpu' else re.sub(r'device: \\\"?cpu\\\"?', 'device: cuda', arg)\n"
      "    if new == arg: continue\n"
      "    n += 1; raw = new.encode()\n"
      "    out += b[at:pos] + b'X' + struct.pack('<I', len(raw)) + raw; at = pos + 5 + len(arg.encode())\n"
      "  assert n >= 2, n\n"
      "  return out + b[at:]\n"
      "for i in src.infolist(): d = src.read(i.filename); dst.writestr(i, edit(d) if i.filename.endswith('data.pkl') else d)\n"
      "dst.close()\" " + q(cpu) + " " + q(gpu));
  INFO(py.output);
  REQUIRE(py.code == 0);
  auto archive = zoo::read_checkpoint(gpu);  // tensors on the CPU, as torch.load(map_location="cpu")
  CHECK_THAT(zoo::checkpoint_config(archive, gpu), Contains("device: cuda"));
  // Without a GPU the file runs on the cpu, and says so; with one, the cpu is asked for.
  const bool gpu_here = torch::cuda::is_available();
  auto task = zoo::load_task(gpu, gpu_here ? std::vector<std::string>{"train.device=cpu"} : std::vector<std::string>{});
  CHECK(task->model().parameters().front().device().is_cpu());
  auto x = torch::rand({3, 1, 28, 28});
  trainer.task().model().eval();
  torch::NoGradGuard g;
  CHECK(torch::equal(trainer.task().model().as<zoo::ViTImpl>()->forward(x), task->model().as<zoo::ViTImpl>()->forward(x)));
  if (!gpu_here)
    CHECK_THROWS_WITH(zoo::load_task(gpu, {"train.device=cuda"}), Contains("train.device: cuda requested"));
}

TEST_CASE("a checkpoint whose weights are not finite is refused, naming the tensor", "[checkpoint]") {
  auto dir = zoo::test::scratch("nanckpt");
  auto cfg = tiny(4, {"train.ema=false"});
  zoo::Trainer trainer(cfg, {dir});
  trainer.run();
  // The file a checkpoint's weights make, written as the trainer writes one: first as it is
  // (it loads), then with one weight NaN, then one infinite.
  auto write = [&](const std::string& path) {
    torch::serialize::OutputArchive a, m;
    a.write("config", c10::IValue(cfg.to_yaml()));
    a.write("step", c10::IValue(int64_t{4}));
    trainer.task().model().save(m);
    a.write("model", m);
    zoo::write_checkpoint(a, {path});
  };
  write(dir + "/fine.pt");
  CHECK_NOTHROW(zoo::load_task(dir + "/fine.pt", {}));
  auto named = trainer.task().model().named_parameters();
  auto& p = named[named.size() / 2];
  torch::NoGradGuard no_grad;
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    p.value().view(-1)[0].fill_(bad);
    write(dir + "/bad.pt");
    CHECK_THROWS_WITH(zoo::load_task(dir + "/bad.pt", {}),
                      Contains(dir + "/bad.pt: model/" + p.key()) && Contains("holds NaN or infinite values"));
  }
  // The EMA's weights are checked too: a finite model beside an average with an infinite weight.
  auto with_ema = tiny(4, {"train.ema=true"});
  zoo::EMA ema(trainer.task().model(), 0.9);  // its average: the weights now, one of them infinite
  p.value().view(-1)[0].fill_(0.5);
  torch::serialize::OutputArchive a, m;
  a.write("config", c10::IValue(with_ema.to_yaml()));
  a.write("step", c10::IValue(int64_t{4}));
  trainer.task().model().save(m);
  a.write("model", m);
  ema.save(a);
  zoo::write_checkpoint(a, {dir + "/ema.pt"});
  CHECK_THROWS_WITH(zoo::load_task(dir + "/ema.pt", {}), Contains(dir + "/ema.pt: EMA weight") &&
                                                           Contains("holds NaN or infinite values"));
}

TEST_CASE("a checkpoint whose weights don't fit the model is refused, naming the weight: missing, reshaped or extra",
          "[checkpoint]") {
  auto dir = zoo::test::scratch("unfitckpt");
  auto cfg = tiny(4, {"train.ema=false"});
  zoo::Trainer trainer(cfg, {dir});
  trainer.run();
  auto& model = trainer.task().model();
  const auto deep = model.named_parameters().keys().back();  // a weight some modules down
  const auto deep_module = deep.substr(0, deep.rfind('.') + 1);
  // The tree Module::save writes, with one weight dropped, one reshaped, or a stray tensor added
  // to one module's archive ("" is the model's own).
  std::string drop, reshape, stray_in;
  std::function<void(torch::nn::Module&, torch::serialize::OutputArchive&, const std::string&)> save_tree =
      [&](torch::nn::Module& m, torch::serialize::OutputArchive& out, const std::string& prefix) {
        for (const auto& p : m.named_parameters(/*recurse=*/false)) {
          if (prefix + p.key() == drop) continue;
          auto sizes = p.value().sizes().vec();
          if (prefix + p.key() == reshape) sizes[0] += 1;
          out.write(p.key(), prefix + p.key() == reshape ? torch::zeros(sizes) : p.value());
        }
        for (const auto& b : m.named_buffers(/*recurse=*/false)) out.write(b.key(), b.value(), /*is_buffer=*/true);
        for (const auto& c : m.named_children()) {
          torch::serialize::OutputArchive sub;
          save_tree(*c.value(), sub, prefix + c.key() + ".");
          out.write(c.key(), sub);
        }
        if (prefix == stray_in) out.write("stray", torch::ones({3}));
      };
  const auto path = dir + "/unfit.pt";
  auto load = [&](std::string d, std::string r, std::string s) {
    drop = std::move(d), reshape = std::move(r), stray_in = std::move(s);
    torch::serialize::OutputArchive a, m;
    a.write("config", c10::IValue(cfg.to_yaml()));
    a.write("step", c10::IValue(int64_t{4}));
    save_tree(model, m, "");
    a.write("model", m);
    zoo::write_checkpoint(a, {path});
    zoo::load_task(path, {});
  };
  CHECK_NOTHROW(load("", "", "none"));  // the tree as the trainer writes it loads
  CHECK_THROWS_WITH(load(deep, "", "none"), Contains(path + ": model/" + deep + " is missing"));
  CHECK_THROWS_WITH(load("", deep, "none"), Contains(path + ": model/" + deep + " has shape"));
  CHECK_THROWS_WITH(load("", "", deep_module),
                    Contains(path + ": model/" + deep_module + "stray is in the checkpoint but not in this model"));
  CHECK_THROWS_WITH(load("", "", ""), Contains(path + ": model/stray is in the checkpoint but not in this model"));
}

TEST_CASE("truncated, foreign and missing checkpoints are UsageErrors naming the path", "[checkpoint]") {
  auto dir = zoo::test::scratch("badckpt");
  zoo::Trainer trainer(tiny(4), {dir});
  trainer.run();
  auto good = read_file(dir + "/checkpoints/" + zoo::step_checkpoint_name(4));
  auto truncated = dir + "/truncated.pt";
  std::ofstream(truncated, std::ios::binary) << good.substr(0, good.size() / 2);
  CHECK_THROWS_AS(zoo::read_checkpoint(truncated), zoo::UsageError);
  CHECK_THROWS_WITH(zoo::read_checkpoint(truncated), Contains(truncated));
  auto text = dir + "/notes.pt";
  std::ofstream(text) << "hello";
  CHECK_THROWS_WITH(zoo::read_checkpoint(text), Contains(text + ": not a readable checkpoint"));
  auto foreign = dir + "/foreign.pt";
  torch::save(torch::nn::Linear(2, 2), foreign);
  CHECK_THROWS_WITH(zoo::read_checkpoint(foreign), Contains("not a zoo checkpoint"));
  CHECK_THROWS_WITH(zoo::read_checkpoint(dir + "/nope.pt"), Contains("no such checkpoint"));
  // Tensor records cut short but with their CRCs intact (a crafted file): refused, never read past.
  const auto short_records = dir + "/short_records.pt";
  auto py = zoo::test::run(
      "python3 -c \"import sys, zipfile\n"
      "src, dst = zipfile.ZipFile(sys.argv[1]), zipfile.ZipFile(sys.argv[2], 'w')\n"
      "for i in src.infolist(): dst.writestr(i, b'' if '/data/' in i.filename else src.read(i.filename))\n"
      "dst.close()\" " + q(dir + "/checkpoints/" + zoo::step_checkpoint_name(4)) + " " + q(short_records));
  INFO(py.output);
  REQUIRE(py.code == 0);
  CHECK_THROWS_WITH(zoo::load_task(short_records, {}),
                    Contains(short_records + ": damaged checkpoint: a tensor record holds 0 bytes but its storage needs"));
  // A width the weights were not trained with: refused by name before any tensor is read.
  CHECK_THROWS_WITH(zoo::load_task(dir + "/checkpoints/" + zoo::step_checkpoint_name(4), {"model.dim=64"}),
                    Contains("--set model.dim=64: ") && Contains("was trained with model.dim=32"));
}

TEST_CASE("crafted tensor records: each storage against its own record, each tensor within its storage",
          "[checkpoint]") {
  auto dir = zoo::test::scratch("craftedckpt");
  torch::serialize::OutputArchive a;
  a.write("probe_a", torch::ones({7, 11}));  // a 308-byte record
  a.write("probe_b", torch::ones({13}));     // a 52-byte one
  const auto good = dir + "/good.pt", swapped = dir + "/swapped.pt", grown = dir + "/grown.pt";
  zoo::write_checkpoint(a, {good});
  CHECK_NOTHROW(zoo::read_checkpoint(good));
  // Two files a hand could make, every CRC intact: one moves 16 bytes from the 308-byte record to
  // the 52-byte one (the total as before); the other gives the 7 x 11 tensor 8 rows in the pickle.
  std::ofstream(dir + "/craft.py") << R"py(import sys, zipfile
src = zipfile.ZipFile(sys.argv[1])
data = {n: src.read(n) for n in src.namelist()}
def repack(dst, edit):
    out = zipfile.ZipFile(dst, 'w')
    for n in src.namelist():
        out.writestr(n, edit(n, data[n]))
    out.close()
size = {len(d): n for n, d in data.items() if '/data/' in n}
a, b = size[308], size[52]
repack(sys.argv[2], lambda n, d: d[:-16] if n == a else d + bytes(16) if n == b else d)
old = b'(K\x07K\x0bt(K\x0bK\x01t'
def grow(n, d):
    if not n.endswith('/data.pkl'):
        return d
    assert d.count(old) == 1, 'the 7 x 11 shape is not in the pickle'
    return d.replace(old, b'(K\x08K\x0bt(K\x0bK\x01t')
repack(sys.argv[3], grow)
repack(sys.argv[4], lambda n, d: b'' if n == a else d + bytes(308) if n == b else d)
out = zipfile.ZipFile(sys.argv[5], 'w')
for n in src.namelist():
    out.writestr(n, data[n], compress_type=zipfile.ZIP_DEFLATED if n == a else zipfile.ZIP_STORED)
out.close()
)py";
  const auto emptied = dir + "/emptied.pt", deflated = dir + "/deflated.pt";
  auto py = zoo::test::run("python3 " + q(dir + "/craft.py") + " " + q(good) + " " + q(swapped) + " " + q(grown) + " " +
                           q(emptied) + " " + q(deflated));
  INFO(py.output);
  REQUIRE(py.code == 0);
  CHECK_THROWS_WITH(zoo::read_checkpoint(swapped), Contains(swapped + ": damaged checkpoint: a tensor record holds 292 "
                                                                     "bytes but its storage needs 308"));
  // (A LibTorch whose own reader checked the shape would refuse it first, in its words.)
  CHECK_THROWS_WITH(zoo::read_checkpoint(grown),
                    Contains(grown + ": damaged checkpoint: a tensor of shape [8, 11] reaches past the 308 bytes of its "
                                     "storage") ||
                        Contains(grown + ": not a readable checkpoint"));
  // The 308 bytes moved whole: the emptied record gives its storage no buffer at all.
  CHECK_THROWS_WITH(zoo::read_checkpoint(emptied), Contains(emptied + ": damaged checkpoint: a tensor record holds 0 "
                                                                     "bytes but its storage needs 308"));
  CHECK_THROWS_WITH(zoo::read_checkpoint(deflated), Contains(deflated + ": damaged checkpoint: its tensor record ") &&
                                                        Contains(" is compressed, which torch never writes"));
}

TEST_CASE("atomic_write: a kill at any instant leaves the old or the new file, whole", "[checkpoint]") {
  auto dir = zoo::test::scratch("atomic");
  auto path = dir + "/ckpt.bin";
  const std::string old_bytes(3 << 20, 'a'), new_bytes(5 << 20, 'b');
  zoo::atomic_write(path, old_bytes);
  int replaced = 0;  // trials in which the child's writes reached the file (each one a new inode): the odd ones at least
  for (int trial = 0; trial < 12; ++trial) {
    struct stat before {};
    REQUIRE(::stat(path.c_str(), &before) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        for (;;) {
          zoo::atomic_write(path, new_bytes);
          zoo::atomic_write(path, old_bytes);
        }
      } catch (...) {
      }
      ::_exit(3);  // never back into Catch from the child
    }
    if (trial % 2 == 1) {  // odd trials: once the child has replaced the file at least once (however slow the disk)
      struct stat seen {};
      for (int i = 0; i < 30000 && ::stat(path.c_str(), &seen) == 0 && seen.st_ino == before.st_ino; ++i) ::usleep(1000);
    }
    ::usleep(1000 * (1 + trial * 7));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));  // killed while writing, not failed
    auto now = read_file(path);
    INFO("trial " << trial << ": " << now.size() << " bytes");
    CHECK((now == old_bytes || now == new_bytes));
    struct stat after {};
    REQUIRE(::stat(path.c_str(), &after) == 0);
    if (after.st_ino != before.st_ino) ++replaced;
  }
  CHECK(replaced > 0);
  // What the kills left behind (".ckpt.bin.tmp.PID" of dead processes) is cleared; the file stays.
  std::ofstream(dir + "/.other.bin.tmp." + std::to_string(::getpid())) << "mine";  // a live writer's: kept
  zoo::remove_stale_temporaries(dir);
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(dir)) left.insert(e.path().filename().string());
  CHECK(left == std::set<std::string>{"ckpt.bin", ".other.bin.tmp." + std::to_string(::getpid())});
}

TEST_CASE("an interrupted-and-resumed run logs the same losses as an uninterrupted one", "[checkpoint][resume]") {
  // On CUDA too where there is a GPU: a resume there reads the checkpoint onto the device, the
  // random-number states with it, and the generators take theirs from the CPU.
  std::vector<std::string> devices{"cpu"};
  if (torch::cuda::is_available()) devices.push_back("cuda");
  for (const auto& device : devices) {
    INFO("train.device=" << device);
    const std::vector<std::string> sets{"train.device=" + device};
    auto full = zoo::test::scratch("full-" + device), split = zoo::test::scratch("split-" + device);
    {
      zoo::Trainer t(tiny(12, sets), {full});
      t.run();
    }
    {
      zoo::TrainerOptions o{split};
      o.stop_after = 6;  // stops after step 6 with a checkpoint, as Ctrl-C would
      zoo::Trainer t(tiny(12, sets), o);
      t.run();
    }
    {
      std::ofstream(split + "/metrics.jsonl", std::ios::app) << R"({"step": 7, "split": "train", "loss": 99})" << "\n";
      zoo::TrainerOptions o{split};
      o.resume = true;
      zoo::Trainer t(tiny(12, sets), o);
      t.run();
    }
    // Bit-identical on CPU with a fixed seed; GPU kernels may sum in another order.
    check_same_losses(full, split, 6, device == "cpu" ? 0.0 : 1e-4);
  }
}

TEST_CASE("a resume goes on with the config's optimizer settings, not the checkpoint's", "[checkpoint][resume]") {
  // The warning about changed keys says the run goes on with the new value; LibTorch 2.x's
  // Optimizer::load would otherwise put the saved one back (1.13's never does: there this test
  // guards nothing, on a 2.x build it does).
#if TORCH_VERSION_MAJOR < 2
  WARN("LibTorch 1.x: Optimizer::load keeps the current options, so this test guards nothing here (it does on 2.x)");
#endif
  auto dir = zoo::test::scratch("resume-optim");
  zoo::TrainerOptions o{dir};
  o.stop_after = 2;
  zoo::Trainer(tiny(4, {"optim.weight_decay=0.0", "optim.beta2=0.99"}), o).run();
  o.resume = true;
  o.stop_after = 3;
  zoo::Trainer t(tiny(4, {"optim.weight_decay=0.25", "optim.beta2=0.95"}), o);
  t.run();
  REQUIRE(t.optimizers().size() == 1);
  double decay = 0;
  for (auto& g : t.optimizers()[0]->param_groups()) {
    auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&g.options());
    REQUIRE(adamw);
    decay = std::max(decay, adamw->weight_decay());
    CHECK(std::get<1>(adamw->betas()) == 0.95);
  }
  CHECK(decay == 0.25);
}

TEST_CASE("a damaged checkpoint's optimizer state or data position is caught, not followed", "[checkpoint][resume]") {
  // Optimizer::load takes state of any shape (the first step would then fail, naming nothing):
  // optimizer_state_mismatch finds it, and --resume refuses the file with it.
  using Make = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;
  const std::vector<std::pair<std::string, Make>> kinds{
      {"adam", [](auto p) { return std::make_unique<torch::optim::Adam>(p, torch::optim::AdamOptions(0.1)); }},
      {"adamw", [](auto p) { return std::make_unique<torch::optim::AdamW>(p, torch::optim::AdamWOptions(0.1)); }},
      {"sgd", [](auto p) { return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1).momentum(0.9)); }}};
  for (const auto& [name, make] : kinds) {
    INFO(name);
    std::vector<torch::Tensor> trained{torch::ones({4}), torch::ones({2, 3})};
    auto opt = make(trained);
    for (auto& p : trained) p.mutable_grad() = torch::ones_like(p);
    opt->step();
    torch::serialize::OutputArchive out;
    opt->save(out);
    std::stringstream bytes;
    out.save_to(bytes);
    auto load_into = [&](std::vector<torch::Tensor> params) {
      auto o = make(std::move(params));
      bytes.seekg(0);
      torch::serialize::InputArchive in;
      in.load_from(bytes);
      o->load(in);
      return zoo::optimizer_state_mismatch(*o);
    };
    CHECK(load_into({torch::ones({4}), torch::ones({2, 3})}).empty());
    CHECK(load_into({torch::ones({4}), torch::ones({3, 2})}) == "the state of parameter 2 has shape [2, 3], not its [3, 2]");
    // Values of the right shape that no run leaves: found too.
    auto poisoned = [&](const std::string& how) {
      auto o = make({torch::ones({4}), torch::ones({2, 3})});
      bytes.seekg(0);
      torch::serialize::InputArchive in;
      in.load_from(bytes);
      o->load(in);
      torch::NoGradGuard no_grad;
      auto apply = [&](auto& a) {
        if (how == "nan") a.exp_avg().view(-1)[0].fill_(std::nan(""));
        if (how == "negative") a.exp_avg_sq().view(-1)[0].fill_(-1.0);
        if (how == "step") a.step(-3);
      };
      for (auto& kv : o->state()) {
        if (auto* a = dynamic_cast<torch::optim::AdamParamState*>(kv.second.get())) apply(*a);
        if (auto* w = dynamic_cast<torch::optim::AdamWParamState*>(kv.second.get())) apply(*w);
        if (auto* g = dynamic_cast<torch::optim::SGDParamState*>(kv.second.get()); g && how == "nan")
          g->momentum_buffer().view(-1)[0].fill_(std::nan(""));
      }
      return zoo::optimizer_state_mismatch(*o);
    };
    CHECK_THAT(poisoned("nan"), Contains("holds NaN or infinite values"));
    if (name != "sgd") {
      CHECK_THAT(poisoned("negative"), Contains("has negative second moments"));
      CHECK_THAT(poisoned("step"), Contains("has a negative step count (-3)"));
    }
  }
  // A cursor past the epoch's end (the largest integer, say) starts the next epoch, as one at its
  // end does, rather than overflowing.
  for (const int64_t cursor : {int64_t{8}, std::numeric_limits<int64_t>::max()}) {
    INFO("cursor " << cursor);
    torch::serialize::OutputArchive out;
    out.write("epoch", c10::IValue(int64_t{0}));
    out.write("cursor", c10::IValue(cursor));
    std::stringstream bytes;
    out.save_to(bytes);
    torch::serialize::InputArchive in;
    in.load_from(bytes);
    zoo::EpochSampler sampler(10, 4, /*seed=*/1);
    sampler.load(in);
    CHECK(sampler.next().size(0) == 4);
    CHECK(sampler.epoch() == 1);
  }
}

TEST_CASE("outputs that can't be written leave training as it was: the same losses, then the error", "[trainer]") {
  // A folder where the ViT writes samples/predictions.png: each write fails, training goes on with
  // its own weights (not the EMA's swapped in) and in training mode, and the run ends with the error.
  auto fine = zoo::test::scratch("outputs-fine"), blocked = zoo::test::scratch("outputs-blocked");
  const std::vector<std::string> sets{"train.sample_every=2", "train.eval_every=2", "train.log_every=1",
                                      "train.ema_decay=0.5"};
  {
    zoo::Trainer t(tiny(6, sets), {fine});
    t.run();
  }
  fs::create_directories(blocked + "/samples/predictions.png");
  {
    zoo::Trainer t(tiny(6, sets), {blocked});
    CHECK_THROWS_WITH(t.run(), Contains("samples not written"));
  }
  check_same_losses(fine, blocked, 6);
  // best.pt holds the same evaluated weights (its EMA's, as loaded).
  auto x = zoo::load_task(fine + "/checkpoints/best.pt", {}), y = zoo::load_task(blocked + "/checkpoints/best.pt", {});
  auto px = x->model().parameters(), py = y->model().parameters();
  REQUIRE(px.size() == py.size());
  for (size_t i = 0; i < px.size(); ++i) CHECK(torch::equal(px[i], py[i]));
}

TEST_CASE("a short run on real Fashion-MNIST clearly learns", "[trainer][learn]") {
  auto dir = zoo::test::scratch("learn");
  auto cfg = tiny(200, {"train.eval_every=0", "train.log_every=25", "optim.warmup_steps=10", "data.eval_limit=1000",
                        "train.threads=2", "train.batch_size=64", "model.dim=64", "model.mlp_dim=128",
                        "model.heads=4", "data.crop_padding=0", "data.hflip=false"});
  zoo::Trainer t(cfg, {dir});
  auto test = t.run();
  auto losses = train_losses(dir);
  REQUIRE(losses.size() == 8);  // every 25 steps
  INFO("test accuracy " << test.at("accuracy") << ", first loss " << losses.front().second << ", last "
                        << losses.back().second);
  CHECK(test.at("accuracy") > 0.65);  // chance is 0.10
  CHECK(losses.back().second < 0.6 * losses.front().second);
  CHECK(fs::exists(dir + "/samples/predictions.png"));
}

TEST_CASE("train.restarts: one run per seed, validation picks one, --resume finishes the rest", "[trainer][resume]") {
  auto dir = zoo::test::scratch("restarts");
  auto cfg = tiny(8, {"train.restarts=3"});
  bool interrupted = true;
  {
    zoo::TrainerOptions o{dir};
    o.stop_after = 4;  // the first restart stops early, as Ctrl-C would
    CHECK(zoo::run_training(cfg, o, &interrupted).empty());
    CHECK_FALSE(interrupted);
    CHECK(fs::exists(dir + "/restarts/seed-3/checkpoints/step-00000004.pt"));
    CHECK_FALSE(fs::exists(dir + "/restarts/seed-4"));
    CHECK_FALSE(fs::exists(dir + "/checkpoints/best.pt"));
  }
  // A row of seed 3's log before its checkpoint: a resumed restart keeps it, one started over would not.
  std::ofstream(dir + "/restarts/seed-3/metrics.jsonl", std::ios::app) << "{\"step\":3,\"note\":\"before the resume\"}\n";
  {  // another train.seed would start new restarts beside seed 3's: refused before anything is written
    zoo::TrainerOptions other{dir};
    other.resume = true;
    CHECK_THROWS_WITH(zoo::run_training(tiny(8, {"train.restarts=3", "train.seed=7"}), other, &interrupted),
                      Contains("holds the restart of train.seed 3, outside train.seed 7 to 9"));
    CHECK_FALSE(fs::exists(dir + "/restarts/seed-7"));
  }
  zoo::TrainerOptions o{dir};
  o.resume = true;
  auto test = zoo::run_training(cfg, o, &interrupted);
  CHECK_FALSE(interrupted);

  // Each restart ran with its own seed (3, 4, 5) and learned differently.
  std::map<int64_t, double> val;
  for (int64_t seed : {3, 4, 5}) {
    const auto run = dir + "/restarts/seed-" + std::to_string(seed);
    auto archive = zoo::read_checkpoint(run + "/checkpoints/best.pt");
    auto stored = zoo::Config::from_yaml(zoo::checkpoint_config(archive, run), run);
    CHECK(stored.get_int("train.seed") == seed);
    CHECK(stored.get_int("train.restarts") == 1);
    std::ifstream in(run + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto row = nlohmann::json::parse(line);
      if (row["split"] == "val") val[seed] = row["accuracy"].get<double>();
    }
  }
  REQUIRE(val.size() == 3);
  CHECK_THAT(read_file(dir + "/restarts/seed-3/metrics.jsonl"), Contains("before the resume"));  // continued
  CHECK(train_losses(dir + "/restarts/seed-3") != train_losses(dir + "/restarts/seed-4"));
  int64_t chosen = 3;
  for (auto& [seed, acc] : val)
    if (acc > val[chosen]) chosen = seed;
  INFO("validation accuracy: seed 3 " << val[3] << ", 4 " << val[4] << ", 5 " << val[5]);
  CHECK(test.at("seed") == chosen);
  CHECK(read_file(dir + "/checkpoints/best.pt") ==
        read_file(dir + "/restarts/seed-" + std::to_string(chosen) + "/checkpoints/best.pt"));

  // restarts.jsonl: one validation row per restart, then the chosen checkpoint's test metrics.
  std::ifstream in(dir + "/restarts.jsonl");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 4);
  for (int i = 0; i < 3; ++i) CHECK(rows[i]["accuracy"].get<double>() == val[3 + i]);
  CHECK(rows[3]["split"] == "test");
  CHECK(rows[3]["seed"] == chosen);
  CHECK(rows[3]["accuracy"].get<double>() == test.at("accuracy"));
  auto task = zoo::load_task(dir + "/checkpoints/best.pt", {});
  torch::NoGradGuard no_grad;
  CHECK(task->evaluate("test").at("accuracy") == test.at("accuracy"));
}

namespace {

// What a weight average averages: parameters and floating-point buffers, in the task's order.
std::vector<torch::Tensor> averaged_state(zoo::Task& task) {
  std::vector<torch::Tensor> out;
  for (auto& p : task.model().named_parameters()) out.push_back(p.value());
  for (auto& b : task.model().named_buffers())
    if (b.value().is_floating_point()) out.push_back(b.value());
  return out;
}

}  // namespace

TEST_CASE("train.restarts_select soup: the greedy soup of the restarts, each kept only if validation holds",
          "[trainer]") {
  auto dir = zoo::test::scratch("soup");
  auto cfg = tiny(8, {"train.restarts=3", "train.restarts_select=soup"});
  bool interrupted = true;
  auto test = zoo::run_training(cfg, zoo::TrainerOptions{dir}, &interrupted);
  CHECK_FALSE(interrupted);

  std::ifstream in(dir + "/restarts.jsonl");
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 7);  // 3 restarts, 3 soup steps, the test row
  std::vector<std::pair<int64_t, double>> val;
  for (int i = 0; i < 3; ++i) val.emplace_back(rows[i]["seed"].get<int64_t>(), rows[i]["accuracy"].get<double>());
  std::stable_sort(val.begin(), val.end(), [](auto& a, auto& b) { return a.second > b.second; });

  auto path = [&](int64_t seed) { return dir + "/restarts/seed-" + std::to_string(seed) + "/checkpoints/best.pt"; };
  // Each restart's best.pt as evaluated (EMA weights swapped in), in float64.
  std::map<int64_t, std::vector<torch::Tensor>> weights;
  for (auto& [seed, v] : val) {
    auto t = zoo::load_task(path(seed), {});
    for (auto& w : averaged_state(*t)) weights[seed].push_back(w.detach().to(torch::kFloat64));
  }
  auto probe = zoo::load_task(path(val[0].first), {});
  auto live = averaged_state(*probe);
  auto load_average = [&](const std::vector<int64_t>& seeds) {
    torch::NoGradGuard no_grad;
    for (size_t j = 0; j < live.size(); ++j) {
      auto sum = weights[seeds[0]][j].clone();
      for (size_t k = 1; k < seeds.size(); ++k) sum += weights[seeds[k]][j];
      live[j].copy_(sum / static_cast<double>(seeds.size()));
    }
  };
  auto accuracy = [&](const std::string& split) {
    torch::NoGradGuard no_grad;
    return probe->evaluate(split).at("accuracy");
  };

  // The best restart first, then each other in the order of its validation accuracy: kept when
  // the average with it scores no less on validation than the soup without it.
  CHECK(rows[3]["soup"] == val[0].first);
  CHECK(rows[3]["kept"] == true);
  std::vector<int64_t> members{val[0].first};
  double current = rows[3]["accuracy"].get<double>();
  CHECK(current == Approx(val[0].second).margin(1e-9));
  for (int i = 1; i < 3; ++i) {
    const auto& row = rows[3 + i];
    const int64_t seed = val[i].first;
    CHECK(row["soup"] == seed);
    auto trial = members;
    trial.push_back(seed);
    load_average(trial);
    const double v = accuracy("val");
    CHECK(row["accuracy"].get<double>() == v);
    CHECK(row["kept"] == (v >= current));
    if (v >= current) members = trial, current = v;
  }
  INFO("soup of " << members.size() << " restarts");
  CHECK(rows[6]["split"] == "test");
  CHECK(rows[6]["soup"] == members);
  CHECK(test.at("soup_size") == members.size());

  // checkpoints/best.pt holds the soup: loadable as any best.pt, its weights the members' mean,
  // its stored config without EMA (the averaged weights are already the EMA's).
  auto soup = zoo::load_task(dir + "/checkpoints/best.pt", {});
  load_average(members);
  auto stored = averaged_state(*soup);
  REQUIRE(stored.size() == live.size());
  for (size_t j = 0; j < live.size(); ++j) CHECK(torch::equal(stored[j], live[j]));
  auto archive = zoo::read_checkpoint(dir + "/checkpoints/best.pt");
  auto cfg_stored = zoo::Config::from_yaml(zoo::checkpoint_config(archive, dir), dir);
  CHECK_FALSE(cfg_stored.get_bool("train.ema"));
  torch::NoGradGuard no_grad;
  CHECK(soup->evaluate("test").at("accuracy") == test.at("accuracy"));
  CHECK(accuracy("test") == test.at("accuracy"));
}
