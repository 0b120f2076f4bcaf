// Tasks: the generative image models on Fashion-MNIST. VAE (Kingma and Welling 2013),
// DCGAN (Radford et al. 2015), and DDPM (Ho et al. 2020) whose checkpoint DDIM (Song et
// al. 2020) also samples. They share the data handling; each owns its step and outputs.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include <spdlog/spdlog.h>

#include "models/ddim.h"
#include "models/ddpm.h"
#include "models/gan.h"
#include "models/unet.h"
#include "models/vae.h"
#include "train/fid.h"
#include "train/image.h"
#include "train/rng.h"
#include "train/tasks/embed.h"
#include "train/tasks/fashion_mnist_task.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

std::vector<int64_t> parse_int_list(const std::string& key, const std::string& text) {
  if (text.empty()) throw UsageError(key + ": expected at least one integer");
  std::vector<int64_t> out;
  for (const auto& item : split_commas(text)) {
    std::string why;
    const auto v = parse_whole(item, why);
    if (!v || *v < 1)
      throw UsageError(key + ": expected comma-separated positive integers, got '" + text + "'" + (why.empty() ? "" : ": " + why));
    out.push_back(*v);
  }
  return out;
}

/// Progress of a sampler on stderr: a bar redrawn in place on a terminal, a line per 10% otherwise.
Progress progress_bar(const std::string& what) {
  const bool tty = ::isatty(2);
  return [what, tty](int64_t done, int64_t total) {
    const int width = 30, filled = static_cast<int>(width * done / total);
    if (tty) {
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld", what.c_str(), std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
    } else if (done == total || (done * 10 / total) != ((done - 1) * 10 / total)) {
      std::fprintf(stderr, "%s %lld/%lld\n", what.c_str(), static_cast<long long>(done), static_cast<long long>(total));
    }
  };
}

/// What the three generative tasks add to the shared data side: FID, and PNG grids.
class ImageGenerationTask : public FashionMnistTask {
 public:
  ImageGenerationTask(const Config& cfg, const TaskContext& ctx)
      : FashionMnistTask(cfg, ctx),
        fid_classifier_(cfg.get_string("eval.fid_classifier")),
        fid_samples_(cfg.get_int("eval.fid_samples")),
        fid_floor_(cfg.get_bool("eval.fid_floor")) {
    if (!fid_classifier_.empty() && fid_samples_ > 0 && val_size_ == 1 && !ctx.state)  // min(fid_samples, images)
      throw UsageError("data.val_size: 1 image is too few for FID on the val split, which fits a covariance to at "
                       "least 2 (eval.fid_classifier is set); give 2 or more");
  }

  /// Images from latents drawn from the prior N(0, I), one draw for the batch.
  torch::Tensor sample(int64_t n) override {
    torch::NoGradGuard no_grad;
    return generate(torch::randn(latent_shape(n), torch::TensorOptions().device(device_)));
  }

  /// Each row walks from one latent draw to another along the great circle (spherical
  /// interpolation: White 2016 for Gaussian latents, the DDIM paper's Sec. 5.3 for x_T), in
  /// `steps` images, both ends included. The first column is what sample(rows) gives after the
  /// same seed.
  torch::Tensor interpolate(int64_t rows, int64_t steps) override {
    check_interpolation();
    torch::NoGradGuard no_grad;
    const auto options = torch::TensorOptions().device(device_);
    auto from = torch::randn(latent_shape(rows), options), to = torch::randn(latent_shape(rows), options);
    return generate(walk(from, to, steps));
  }

  /// The same walk between the latents of two images (encode), e.g. DDIM's inversion (Sec. 4.3)
  /// of each; its ends are the model's reconstructions of them.
  torch::Tensor interpolate_between(const torch::Tensor& from, const torch::Tensor& to, int64_t steps) override {
    check_interpolation();
    torch::NoGradGuard no_grad;
    auto ends = encode(torch::cat({from, to}, 0).to(device_, torch::kFloat));
    return decode_encoded(walk(ends.slice(0, 0, 1), ends.slice(0, 1, 2), steps));
  }

 protected:
  /// `steps` latents along the great circle from each row of `from` to the same row of `to`,
  /// both ends included, row by row: (rows * steps, ...).
  static torch::Tensor walk(const torch::Tensor& from, const torch::Tensor& to, int64_t steps) {
    std::vector<torch::Tensor> path;
    for (int64_t j = 0; j < steps; ++j) path.push_back(slerp(from, to, static_cast<double>(j) / static_cast<double>(steps - 1)));
    return torch::stack(path, 1).flatten(0, 1);
  }
  /// The shape of n latents: (n, latent_dim), or (n, 1, 28, 28) for a diffusion model's x_T.
  virtual std::vector<int64_t> latent_shape(int64_t n) const = 0;
  /// Images (n, 1, 28, 28) in [0, 1] from n latents, under no_grad.
  virtual torch::Tensor generate(const torch::Tensor& latents) = 0;
  /// UsageError when the latent does not fix the image (a sampler that draws noise of its own).
  virtual void check_interpolation() const {}
  /// Images from latents that encode found (and walks between them): generate, or where generate
  /// is not encode's inverse, the process that is.
  virtual torch::Tensor decode_encoded(const torch::Tensor& latents) { return generate(latents); }
  /// The latents of images (n, 1, 28, 28) in [0, 1], under no_grad: what decode_encoded maps back to them.
  virtual torch::Tensor encode(const torch::Tensor& images) {
    (void)images;
    throw UsageError("--between: this model has no encoder to find the latent of an image (a GAN's generator only "
                     "maps latents to images); use a vae or ddpm checkpoint (zoo sample vae or ddim)");
  }

  void before_training() override {
    FashionMnistTask::before_training();
    if (!fid_classifier_.empty() && fid_samples_ > 0 && !fid_) build_fid();
  }

  /// The next training images alone, (B, 1, 28, 28) in [0, 1].
  torch::Tensor next_images() { return next_batch().first; }

  /// FID of eval.fid_samples samples against as many real images of `split` (when
  /// eval.fid_classifier names a ViT checkpoint); with eval.fid_floor also the FID of real
  /// training images against the same real images, the floor a perfect model would reach.
  void add_fid(const std::string& split, Scalars& m) {
    if (fid_classifier_.empty() || fid_samples_ == 0) return;
    if (!fid_) build_fid();
    RestoredRng kept(device_);  // the run's own random stream goes on afterwards as if no sample had been drawn
    fid_rng_.apply(device_);
    auto real = load_fashion_mnist(root_, split, val_size_, fid_samples_).images;
    const auto n = real.size(0);
    if (n < 2)  // e.g. zoo eval --split val --set data.val_size=1, which the check when training does not see
      throw UsageError("data.val_size: " + std::to_string(n) + " image in the " + split + " split is too few for FID, "
                       "which fits a covariance to at least 2 (eval.fid_classifier is set); give 2 or more");
    std::vector<torch::Tensor> fake;
    for (int64_t done = 0; done < n; done += 500) fake.push_back(sample(std::min<int64_t>(500, n - done)).cpu());
    auto real_f = fid_->features(real);
    m["fid"] = frechet_distance(fid_->features(torch::cat(fake, 0)), real_f);
    m["fid_samples"] = static_cast<double>(n);
    if (fid_floor_) {
      auto train = load_fashion_mnist(root_, "train", val_size_, n).images;
      m["fid_floor_train_vs_" + split] = frechet_distance(fid_->features(train), real_f);
    }
  }
  /// The global generators' state when made, put back when destroyed.
  struct RestoredRng {
    explicit RestoredRng(torch::Device device) : device(device), state(RngState::capture(device)) {}
    ~RestoredRng() {
      try {
        state.apply(device);
      } catch (const std::exception& e) {  // a destructor must not throw (it may run while an error unwinds)
        spdlog::warn("could not restore the random-number state after FID: {}", e.what());
      }
    }
    torch::Device device;
    RngState state;
  };
  /// Loads the FID classifier and fixes where FID's samples start at every evaluation: the
  /// generators seeded with train.seed, once the classifier is built (it draws initial weights
  /// before it loads its own). The same for a training run's evaluations and for zoo eval, and
  /// the run's own random stream is put back.
  void build_fid() {
    RestoredRng kept(device_);
    torch::manual_seed(seed_);
    fid_ = std::make_unique<FeatureExtractor>(fid_classifier_, device_);
    fid_rng_ = RngState::capture(device_);
  }

  void write_grid(const std::string& dir, const std::string& name, const torch::Tensor& images, int64_t columns = 8) {
    write_png((fs::path(dir) / name).string(), make_grid(images, columns, 2, 3));
  }

  std::string fid_classifier_;
  int64_t fid_samples_;
  bool fid_floor_;
  std::unique_ptr<FeatureExtractor> fid_;
  RngState fid_rng_;  // see build_fid
};

void add_generative_keys(Schema& s, bool hflip, int64_t eval_limit) {
  add_fashion_mnist_keys(s, hflip, eval_limit);
  s.add_string("eval.fid_classifier", "", "vit_fashion_mnist checkpoint whose [CLS] features FID uses (empty = no FID)")
      .add_int("eval.fid_samples", 1000, "samples (and real images) for FID (0 = no FID)", 0)
      .check("eval.fid_samples", [](const Value& v) {
        return std::get<int64_t>(v) == 1 ? "must be 0 (no FID) or at least 2: FID fits a covariance to the features"
                                         : "";
      })
      .add_bool("eval.fid_floor", false, "also report FID of real training images against the split");
}

// ------------------------------------------------------------------------------- VAE
class VAETask : public ImageGenerationTask, public Embedder {
 public:
  VAETask(const Config& cfg, const TaskContext& ctx)
      : ImageGenerationTask(cfg, ctx), iw_samples_(cfg.get_int("eval.iw_samples")), iw_images_(cfg.get_int("eval.iw_images")) {
    model_ = VAE(VAEOptions().hidden_dim(cfg.get_int("model.hidden_dim")).latent_dim(cfg.get_int("model.latent_dim")));
    model_->to(device_);
  }
  torch::nn::Module& model() override { return *model_; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss, rec, kl;  // on the device (StepLog)
    for (int64_t m = 0; m < ctx.accumulation(); ++m) {
      auto x = next_images();
      auto terms = VAEImpl::elbo(x, model_->forward(x));
      auto l = terms.neg_elbo().mean();
      ctx.backward(l);
      accumulate(loss, l), accumulate(rec, terms.reconstruction.mean()), accumulate(kl, terms.kl.mean());
    }
    ctx.step_optimizer();
    const double n = static_cast<double>(ctx.accumulation());
    StepLog log;
    log.deferred = {{"loss", {loss, n}}, {"reconstruction", {rec, n}}, {"kl", {kl, n}}};
    return log;
  }

  /// elbo: mean ELBO in nats per image over the split; log_px: the importance-weighted
  /// estimate of log p(x) (eval.iw_samples samples) over its first eval.iw_images images.
  Scalars evaluate(const std::string& split) override {
    const auto& set = eval_set(split);
    double elbo = 0, rec = 0, kl = 0;
    for (int64_t i = 0; i < set.size(); i += 1000) {
      auto x = set.images.slice(0, i, std::min(set.size(), i + 1000));
      auto t = VAEImpl::elbo(x, model_->forward(x));
      elbo -= t.neg_elbo().sum().item<double>(), rec += t.reconstruction.sum().item<double>(), kl += t.kl.sum().item<double>();
    }
    const double n = static_cast<double>(set.size());
    Scalars m{{"elbo", elbo / n}, {"reconstruction", rec / n}, {"kl", kl / n}, {"examples", n}};
    if (iw_images_ > 0) {
      const auto k = std::min(iw_images_, set.size());
      double log_px = 0, elbo_k = 0;
      for (int64_t i = 0; i < k; i += 50) {
        auto x = set.images.slice(0, i, std::min(k, i + 50));
        log_px += model_->log_likelihood(x, iw_samples_).sum().item<double>();
        elbo_k -= VAEImpl::elbo(x, model_->forward(x)).neg_elbo().sum().item<double>();
      }
      m["log_px"] = log_px / static_cast<double>(k);
      m["elbo_on_log_px_images"] = elbo_k / static_cast<double>(k);
      m["iw_samples"] = static_cast<double>(iw_samples_);
      m["iw_images"] = static_cast<double>(k);
    }
    add_fid(split, m);
    return m;
  }
  std::pair<std::string, bool> best_metric() const override { return {"elbo", true}; }

  std::vector<int64_t> latent_shape(int64_t n) const override { return {n, model_->options.latent_dim()}; }
  torch::Tensor generate(const torch::Tensor& z) override {
    return torch::sigmoid(model_->decode(z)).view({z.size(0), 1, 28, 28});  // the Bernoulli means
  }
  torch::Tensor encode(const torch::Tensor& images) override { return model_->encode(images).first; }  // mean of q(z|x)

  void write_outputs(const std::string& dir) override {
    write_grid(dir, "samples.png", sample(64));
    const auto& set = eval_set("test");
    auto x = set.images.slice(0, 0, 32);  // fewer where data.eval_limit is below 32
    auto rec = torch::sigmoid(model_->decode(model_->encode(x).first)).view_as(x);
    write_grid(dir, "reconstructions.png", torch::stack({x, rec}, 1).view({2 * x.size(0), 1, 28, 28}));  // pairs: image, reconstruction
  }

  /// zoo embed: the mean of q(z|x), the code without the reparameterization's noise.
  bool embeds_images() const override { return true; }
  torch::Tensor embed_images(const torch::Tensor& images) override {
    return in_eval_mode(*model_, [&] {
      return in_batches(images.size(0), 500, model_->options.latent_dim(), [&](int64_t begin, int64_t end) {
        return model_->encode(images.slice(0, begin, end).to(device_, torch::kFloat)).first.to(torch::kFloat).cpu();
      });
    });
  }

 private:
  VAE model_{nullptr};
  int64_t iw_samples_, iw_images_;
};

// ------------------------------------------------------------------------------- DCGAN
class GANTask : public ImageGenerationTask {
 public:
  GANTask(const Config& cfg, const TaskContext& ctx) : ImageGenerationTask(cfg, ctx) {
    if (accumulate_ != 1) throw UsageError("train.accumulate: the GAN takes one batch per step; set it to 1");
    auto opts = DCGANOptions()
                    .latent_dim(cfg.get_int("model.latent_dim"))
                    .generator_features(cfg.get_int("model.generator_features"))
                    .discriminator_features(cfg.get_int("model.discriminator_features"));
    generator_ = Generator(opts);
    discriminator_ = Discriminator(opts);
    generator_->to(device_);
    discriminator_->to(device_);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ + 7);
    fixed_z_ = torch::randn({64, opts.latent_dim()}, gen).to(device_);  // the same z for every progress grid
  }
  torch::nn::Module& model() override { return *generator_; }
  std::vector<std::pair<std::string, torch::nn::Module*>> extra_modules() override {
    return {{"discriminator", discriminator_.ptr().get()}};
  }
  /// Optimizer 0 updates G, optimizer 1 updates D (Adam(2e-4, beta1 = 0.5) in the shipped config).
  std::vector<std::vector<torch::Tensor>> optimizer_params() override {
    return {generator_->parameters(), discriminator_->parameters()};
  }

  StepLog train_step(StepContext& ctx) override {
    namespace F = torch::nn::functional;
    auto real = next_images() * 2 - 1;  // [-1, 1], as the generator's tanh
    const auto b = real.size(0);
    auto z = torch::randn({b, generator_->options.latent_dim()}, real.options());
    auto fake = generator_->forward(z);
    auto ones = torch::ones({b}, real.options()), zeros = torch::zeros({b}, real.options());
    // D step: maximize log D(x) + log(1 - D(G(z))).
    discriminator_->zero_grad();  // drop what the last G step left in D
    auto d_real = discriminator_->forward(real), d_fake = discriminator_->forward(fake.detach());
    auto loss_d = F::binary_cross_entropy_with_logits(d_real, ones) + F::binary_cross_entropy_with_logits(d_fake, zeros);
    ctx.backward(loss_d, 1);
    ctx.step_optimizer(1);
    // G step, non-saturating: maximize log D(G(z)) (Goodfellow et al. 2014, Sec. 3).
    auto loss_g = F::binary_cross_entropy_with_logits(discriminator_->forward(fake), ones);
    ctx.backward(loss_g, 0);
    ctx.step_optimizer(0);
    torch::NoGradGuard no_grad;
    auto ld = loss_d.detach().to(torch::kDouble), lg = loss_g.detach().to(torch::kDouble);
    StepLog log;  // on the device (StepLog)
    log.deferred = {{"loss", {ld + lg, 1.0}},
                    {"loss_d", {ld, 1.0}},
                    {"loss_g", {lg, 1.0}},
                    {"d_real", {torch::sigmoid(d_real.detach().to(torch::kFloat)).mean(), 1.0}},
                    {"d_fake", {torch::sigmoid(d_fake.detach().to(torch::kFloat)).mean(), 1.0}}};
    return log;
  }

  /// The discriminator's view of held-out real images and of fresh samples. D stays in training
  /// mode (only model(), G, is switched to eval): it normalizes with the statistics of the batch
  /// it sees, all real or all generated, as in its training step; its running statistics are never
  /// used.
  Scalars evaluate(const std::string& split) override {
    const auto& set = eval_set(split);
    const auto n = std::min<int64_t>(set.size(), 1000);
    auto real = set.images.slice(0, 0, n) * 2 - 1;
    auto fake = generator_->forward(torch::randn({n, generator_->options.latent_dim()}, real.options()));
    Scalars m{{"d_real", torch::sigmoid(discriminator_->forward(real)).mean().item<double>()},
              {"d_fake", torch::sigmoid(discriminator_->forward(fake)).mean().item<double>()},
              {"examples", static_cast<double>(n)}};
    add_fid(split, m);
    return m;
  }
  std::pair<std::string, bool> best_metric() const override { return {"", true}; }  // best.pt = the last

  std::vector<int64_t> latent_shape(int64_t n) const override { return {n, generator_->options.latent_dim()}; }
  torch::Tensor generate(const torch::Tensor& z) override { return (generator_->forward(z) + 1) / 2; }
  void write_outputs(const std::string& dir) override {
    torch::NoGradGuard no_grad;
    write_grid(dir, "samples.png", (generator_->forward(fixed_z_) + 1) / 2);
  }

 private:
  Generator generator_{nullptr};
  Discriminator discriminator_{nullptr};
  torch::Tensor fixed_z_;
};

// ------------------------------------------------------------------------------- DDPM
/// The U-Net and its noise schedule in one module, so the schedule's buffers travel with
/// the weights (to(), checkpoints) while the samplers stay apart from the network.
class DiffusionModelImpl : public torch::nn::Module {
 public:
  DiffusionModelImpl(const UNetOptions& unet_options, const NoiseScheduleOptions& schedule_options)
      : unet(register_module("unet", UNet(unet_options))),
        schedule(register_module("schedule", NoiseSchedule(schedule_options))) {}
  UNet unet;
  NoiseSchedule schedule;
};
TORCH_MODULE(DiffusionModel);

class DDPMTask : public ImageGenerationTask {
 public:
  DDPMTask(const Config& cfg, const TaskContext& ctx)
      : ImageGenerationTask(cfg, ctx),
        prediction_(parse_prediction(cfg.get_string("diffusion.prediction"))),
        sampler_name_(cfg.get_string("sample.sampler")),
        steps_(cfg.get_int("sample.steps")),
        eta_(cfg.get_float("sample.eta")),
        spacing_(parse_spacing(cfg.get_string("sample.spacing"))),
        variance_beta_(cfg.get_string("sample.variance") == "beta"),
        clip_(cfg.get_bool("sample.clip")),
        grid_n_(cfg.get_int("sample.grid")) {
    const auto T = cfg.get_int("diffusion.timesteps");
    if (steps_ > T) throw UsageError("sample.steps: " + std::to_string(steps_) + " is more than diffusion.timesteps " + std::to_string(T));
    auto unet = UNetOptions()
                    .base_channels(cfg.get_int("model.base_channels"))
                    .channel_mults(parse_int_list("model.channel_mults", cfg.get_string("model.channel_mults")))
                    .res_blocks(cfg.get_int("model.res_blocks"))
                    .attention_resolutions(parse_int_list("model.attention_resolutions", cfg.get_string("model.attention_resolutions")))
                    .dropout(cfg.get_float("model.dropout"))
                    .heads(cfg.get_int("model.heads"));
    if (unet.base_channels() % 8 != 0)  // every level's channels in GroupNorm's 8 groups
      throw UsageError("model.base_channels: " + std::to_string(unet.base_channels()) +
                       " is not a multiple of 8 (GroupNorm's 8 groups); e.g. 32 or 64");
    if (unet.channel_mults().size() > 3)  // 28 halves to 14 and 7, no further
      throw UsageError("model.channel_mults: " + std::to_string(unet.channel_mults().size()) + " levels halve 28 too often (at most 3 levels)");
    for (auto m : unet.channel_mults()) {
      if (m > 64) throw UsageError("model.channel_mults: each multiplier must be at most 64, got " + std::to_string(m));
      if ((unet.base_channels() * m) % unet.heads() != 0) throw UsageError("model.heads: must divide every level's channels");
    }
    std::string sides;  // the sides the levels work at: 28, 14, 7
    for (size_t level = 0; level < unet.channel_mults().size(); ++level)
      sides += (sides.empty() ? "" : ", ") + std::to_string(28 >> level);
    std::vector<int64_t> reached;
    for (auto r : unet.attention_resolutions()) {
      if (r > 0 && 28 % r == 0 && ((28 / r) & (28 / r - 1)) == 0 && 28 / r < (1 << unet.channel_mults().size())) {
        reached.push_back(r);
        continue;
      }
      const auto what = "model.attention_resolutions: " + std::to_string(r) + " is not a side of this U-Net's levels (" +
                        sides + ")";
      if (!ctx.state) throw UsageError(what);
      spdlog::warn("{}; the network was trained without attention there", what);  // a checkpoint from before the check
    }
    unet.attention_resolutions(reached);
    if (cfg.get_string("diffusion.schedule") == "linear") {
      const double b1 = cfg.get_float("diffusion.beta_start"), bT = cfg.get_float("diffusion.beta_end");
      if (!(b1 > 0)) throw UsageError("diffusion.beta_start: must be above 0, got 0 (a variance of 0 at t = 1); the "
                                      "paper's is 0.0001");
      if (!(bT < 1)) throw UsageError("diffusion.beta_end: must be below 1, got 1 (no signal left at t = T); the "
                                      "paper's is 0.02");
      if (b1 > bT && !ctx.state)  // a new run; a checkpoint trained so still loads (the schedule is valid, if odd)
        throw UsageError("diffusion.beta_start: " + show_value(b1) + " is above diffusion.beta_end " + show_value(bT) +
                         "; the linear schedule rises from beta_start to beta_end (the paper's: 0.0001 to 0.02)");
    }
    model_ = DiffusionModel(unet, NoiseScheduleOptions()
                                      .timesteps(T)
                                      .kind(cfg.get_string("diffusion.schedule"))
                                      .beta_start(cfg.get_float("diffusion.beta_start"))
                                      .beta_end(cfg.get_float("diffusion.beta_end")));
    // The samplers take x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) in float: an alpha-bar_T below
    // float's smallest normal (the linear 1e-4..0.02 schedule's from T = 8,633 on) loses its digits
    // there, and under about 1.4e-45 is 0, x0 inf and the images NaN (from T = 10,277).
    // Nichol and Dhariwal (2021) scale the linear betas by 1000/T instead.
    const double ab_T = model_->schedule->alphas_cumprod[T - 1].item<double>();
    if (ab_T < std::numeric_limits<float>::min()) {
      const auto what = "diffusion.timesteps: alpha-bar at t = T is " + fmt::format("{:.3g}", ab_T) + " over " +
                        std::to_string(T) + " steps of this schedule, below float's smallest normal (1.2e-38): "
                        "x_t / sqrt(alpha-bar) (x0 under epsilon prediction; DDIM inversion) loses its digits or is inf";
      if (!ctx.state) throw UsageError(what + "; use fewer steps or a smaller diffusion.beta_end");
      spdlog::warn("{}; sampling from this checkpoint may give NaN images", what);
    }
    model_->to(device_);
  }
  torch::nn::Module& model() override { return *model_; }
  std::vector<std::vector<torch::Tensor>> optimizer_params() override { return {model_->unet->parameters()}; }

  /// The simple loss (Ho et al., Eq. 14): || target - net(x_t, t) ||^2, t ~ U{0..T-1}.
  torch::Tensor loss(const torch::Tensor& x0, const torch::Generator& gen = {}) {
    const auto b = x0.size(0);
    auto t = to_device(torch::randint(0, model_->schedule->timesteps(), {b}, gen, torch::kLong), device_);
    auto noise = to_device(torch::randn(x0.sizes(), gen, torch::kFloat), device_);
    auto x_t = model_->schedule->q_sample(x0, t, noise);
    auto out = model_->unet->forward(x_t, t);
    return torch::mse_loss(out.to(torch::kFloat), model_->schedule->target(x0, noise, t, prediction_));
  }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor total;  // on the device (StepLog)
    for (int64_t m = 0; m < ctx.accumulation(); ++m) {
      auto l = loss(next_images() * 2 - 1);
      ctx.backward(l);
      accumulate(total, l);
    }
    ctx.step_optimizer();
    StepLog log;
    log.deferred["loss"] = {total, static_cast<double>(ctx.accumulation())};
    return log;
  }

  /// The simple loss on held-out images, with t and noise drawn from a fixed seed.
  Scalars evaluate(const std::string& split) override {
    const auto& set = eval_set(split);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
    double total = 0;
    for (int64_t i = 0; i < set.size(); i += 250) {
      auto x = set.images.slice(0, i, std::min(set.size(), i + 250)) * 2 - 1;
      total += loss(x, gen).item<double>() * static_cast<double>(x.size(0));
    }
    Scalars m{{"loss", total / static_cast<double>(set.size())}, {"examples", static_cast<double>(set.size())}};
    add_fid(split, m);
    return m;
  }
  std::pair<std::string, bool> best_metric() const override { return {"loss", false}; }

  std::vector<int64_t> latent_shape(int64_t n) const override { return {n, 1, 28, 28}; }
  void check_interpolation() const override {
    if (sampler_name_ == "ddpm")
      throw UsageError("--interpolate: DDPM's sampler draws new noise at every step, so x_T does not fix the image; "
                       "use zoo sample ddim (eta 0)");
    if (eta_ != 0)
      throw UsageError("--interpolate: with eta " + show_value(eta_) + " DDIM draws new noise at every step, so "
                       "x_T does not fix the image; pass --eta 0");
  }
  /// DDIM's inversion (eta 0, the sampler's steps and spacing): x_0 in [-1, 1] run to x_T.
  torch::Tensor encode(const torch::Tensor& images) override {
    return ddim_invert(*model_->schedule, denoiser(), images * 2 - 1, ddim_options().eta(0),
                       progress_bar("ddim inversion " + std::to_string(steps_) + " steps"));
  }
  /// The inversion's own inverse: the same steps forwards, x0 unclipped as the inversion leaves
  /// it (sample.clip's clipping would pull a reconstruction away from its image).
  torch::Tensor decode_encoded(const torch::Tensor& x_T) override {
    return to_unit(ddim_sample(*model_->schedule, denoiser(), x_T, ddim_options().eta(0).clip_x0(false),
                               progress_bar("ddim " + std::to_string(steps_) + " steps")));
  }
  torch::Tensor generate(const torch::Tensor& x_T) override {
    if (sampler_name_ == "ddpm")
      return to_unit(ddpm_sample(*model_->schedule, denoiser(), x_T,
                                 DDPMSamplerOptions().prediction(prediction_).variance_beta(variance_beta_).clip_x0(clip_),
                                 progress_bar("ddpm " + std::to_string(model_->schedule->timesteps()) + " steps")));
    return to_unit(ddim_sample(*model_->schedule, denoiser(), x_T, ddim_options().eta(eta_).clip_x0(clip_),
                               progress_bar("ddim " + std::to_string(steps_) + " steps")));
  }
  void write_outputs(const std::string& dir) override {
    if (grid_n_ > 0) write_grid(dir, "samples.png", sample(grid_n_));
  }

 private:
  /// The U-Net as the samplers take it, its output in float32.
  Denoiser denoiser() {
    auto* unet = model_->unet.get();
    return [unet](const torch::Tensor& x, const torch::Tensor& t) { return unet->forward(x, t).to(torch::kFloat); };
  }
  /// DDIM with the config's steps, spacing and prediction (eta and clipping are each caller's).
  DDIMSamplerOptions ddim_options() const { return DDIMSamplerOptions().steps(steps_).spacing(spacing_).prediction(prediction_); }
  /// x0 in [-1, 1] as images in [0, 1].
  static torch::Tensor to_unit(const torch::Tensor& x0) { return ((x0 + 1) / 2).clamp(0, 1); }

  DiffusionModel model_{nullptr};
  Prediction prediction_;
  std::string sampler_name_;
  int64_t steps_;
  double eta_;
  Spacing spacing_;
  bool variance_beta_, clip_;
  int64_t grid_n_;
};

template <class T>
std::function<std::unique_ptr<Task>(const Config&, const TaskContext&)> maker() {
  return [](const Config& cfg, const TaskContext& ctx) -> std::unique_ptr<Task> { return std::make_unique<T>(cfg, ctx); };
}

}  // namespace

TaskInfo vae_fashion_mnist_task() {
  return {"vae_fashion_mnist", "VAE (Kingma and Welling 2013), Bernoulli decoder, on Fashion-MNIST",
          [](Schema& s) {
            s.add_int("model.hidden_dim", 400, "hidden width of the encoder and decoder MLPs", 1, 65536)
                .add_int("model.latent_dim", 20, "dimension of z", 1, 16384)
                .add_int("eval.iw_samples", 1000, "importance samples k for the log p(x) estimate", 1, 100000)
                .add_int("eval.iw_images", 1000, "images of the split given the log p(x) estimate (0 = none)", 0);
            add_generative_keys(s, false, 0);
          },
          maker<VAETask>()};
}

TaskInfo gan_fashion_mnist_task() {
  return {"gan_fashion_mnist", "DCGAN (Radford et al. 2015) on Fashion-MNIST",
          [](Schema& s) {
            s.add_int("model.latent_dim", 100, "dimension of z", 1, 16384)
                .add_int("model.generator_features", 256, "feature maps of G at 7x7 (halved at 14x14)", 2, 16384)
                .add_int("model.discriminator_features", 128, "feature maps of D at 7x7 (halved at 14x14)", 2, 16384);
            add_generative_keys(s, false, 0);
          },
          maker<GANTask>()};
}

TaskInfo ddpm_fashion_mnist_task() {
  return {"ddpm_fashion_mnist", "DDPM (Ho et al. 2020) U-Net on Fashion-MNIST; sampled by DDPM or DDIM",
          [](Schema& s) {
            s.add_int("model.base_channels", 32, "U-Net feature maps at 28x28", 8, 4096)
                .add_string("model.channel_mults", "1,2,2", "feature-map multipliers per level (each level halves the side)")
                .add_int("model.res_blocks", 2, "residual blocks per level", 1, 8)
                .add_string("model.attention_resolutions", "7", "sides at which self-attention follows the blocks, e.g. 14,7")
                .add_float("model.dropout", 0.1, "dropout in the residual blocks", 0.0, 0.9)
                .add_int("model.heads", 4, "attention heads", 1, 1024)
                .add_int("diffusion.timesteps", 1000, "diffusion steps T", 2, 100000)
                .add_string("diffusion.schedule", "linear", "noise schedule", {"linear", "cosine"})
                .add_float("diffusion.beta_start", 1e-4, "linear schedule: beta_1, above 0", 0.0, 1.0)
                .add_float("diffusion.beta_end", 0.02, "linear schedule: beta_T, below 1", 0.0, 1.0)
                .add_string("diffusion.prediction", "epsilon", "what the network predicts", {"epsilon", "v", "x0"})
                .add_string("sample.sampler", "ddim", "sampler for outputs and zoo sample", {"ddpm", "ddim"})
                .add_int("sample.steps", 50, "DDIM steps S", 1)
                .add_float("sample.eta", 0.0, "DDIM eta (0 deterministic, 1 DDPM-like)", 0.0, 1.0)
                .add_string("sample.spacing", "linspace", "DDIM timestep spacing", {"linspace", "leading", "trailing"})
                .add_string("sample.variance", "beta_tilde", "DDPM sampling variance", {"beta", "beta_tilde"})
                .add_bool("sample.clip", true, "clip predicted x0 to [-1, 1]")
                .add_int("sample.grid", 64, "samples in the training-time grid (0 = none)", 0, 4096);
            add_generative_keys(s, true, 2000);
          },
          maker<DDPMTask>()};
}

}  // namespace zoo
