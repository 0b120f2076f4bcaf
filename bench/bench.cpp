// Training-step throughput of zoo's models in C++, on fixed random batches of each task's
// shape, for scripts/bench to set beside the same architecture in PyTorch Python
// (bench/<model>_peer.py). Prints one JSON line:
//   {"impl": "zoo" ("torch" for --model bmm --impl torch), "model": ..., "items_per_s": ..., "unit": ..., "peak_rss_mib": ..., "params": ..., "threads": ...}
//
//   zoo_bench --model vit|transformer|bert|clip|vae|gan|ddpm|ddim|dropout [--threads N] [--steps N] [--warmup N] [--batch N]
//             [--device cpu|cuda] [--precision fp32|bf16]
// --precision bf16 runs each step under autocast (zoo::Autocast, as train.precision=bf16 does).
// On cuda the model and its batch live on the GPU, in float32 as on the CPU unless --precision is
// bf16, and the timing
// waits for the GPU's queued work before it starts and before it stops.
// ddim times sampling, not training: a batch through 50 DDIM steps (eta 0) per "step".
// dropout times one training-mode dropout (p = 0.1) of a (batch, 512) activation per "step".
//   zoo_bench --model bmm [--threads N] [--steps N] [--warmup N] [--batch N] [--tokens T] [--head-dim D] [--impl zoo|torch]
// times attention's two batched products, forward and backward, by zoo::bmm or torch::bmm: N
// (512) products of T x T x D (50 x 50 x 32, the ViT's) each.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include "models/bert.h"
#include "models/clip.h"
#include "models/common/attention.h"
#include "models/common/dropout.h"
#include "models/ddim.h"
#include "models/gan.h"
#include "models/transformer.h"
#include "models/unet.h"
#include "models/vae.h"
#include "models/vit.h"
#include "train/trainer.h"

namespace {

torch::Device dev = torch::kCPU;  // --device

struct Bench {
  std::function<void()> step;  // one optimizer step
  double items_per_step = 0;
  std::string unit;
  int64_t params = 0;
};

int64_t count(const std::vector<torch::Tensor>& ps) {
  int64_t n = 0;
  for (const auto& p : ps) n += p.numel();
  return n;
}

/// AdamW step with gradient clipping at 1, as zoo's trainer takes it.
std::function<void(const torch::Tensor&)> optimizer_step(std::shared_ptr<torch::optim::Optimizer> opt,
                                                        std::vector<torch::Tensor> params) {
  return [opt, params](const torch::Tensor& loss) {
    opt->zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    opt->step();
  };
}

// ViT on Fashion-MNIST: the vit_fashion_mnist recipe's sizes.
Bench vit(int64_t batch) {
  auto m = zoo::ViT(zoo::ViTOptions().image_size(28).patch_size(4).dim(128).depth(6).heads(4).mlp_dim(256).dropout(0.1));
  m->train();
  m->to(dev);
  auto opt = std::make_shared<torch::optim::AdamW>(m->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  auto update = optimizer_step(opt, m->parameters());
  auto x = torch::rand({batch, 1, 28, 28}).to(dev);
  auto y = torch::randint(0, 10, {batch}, torch::kLong).to(dev);
  return {[=]() mutable { update(torch::nn::functional::cross_entropy(m->forward(x), y)); }, static_cast<double>(batch),
          "images", count(m->parameters())};
}

// Transformer G2P: configs/transformer_g2p.yaml's sizes, words of 8 letters + EOS in,
// BOS + 8 phones (+ EOS) out; label-smoothed loss; Adam(0.9, 0.98).
Bench transformer(int64_t batch) {
  const int64_t src_vocab = 31, tgt_vocab = 73, s = 9, t = 10;
  auto m = zoo::Transformer(zoo::TransformerOptions(src_vocab, tgt_vocab)
                                .d_model(256).heads(4).ff_dim(512).encoder_layers(3).decoder_layers(3).dropout(0.1)
                                .attention_dropout(0.1));  // as nn.Transformer, whose one dropout covers both
  m->train();
  m->to(dev);
  auto opt = std::make_shared<torch::optim::Adam>(m->parameters(),
                                                  torch::optim::AdamOptions(1e-4).betas({0.9, 0.98}).eps(1e-9));
  auto update = optimizer_step(opt, m->parameters());
  auto src = torch::randint(4, src_vocab, {batch, s}, torch::kLong).to(dev);
  auto tgt = torch::randint(4, tgt_vocab, {batch, t}, torch::kLong).to(dev);
  return {[=]() mutable {
            auto logits = m->forward(src, tgt.slice(1, 0, -1));
            update(zoo::label_smoothed_cross_entropy(logits.reshape({-1, tgt_vocab}), tgt.slice(1, 1).reshape({-1}), 0.1, 0));
          },
          static_cast<double>(batch * (s + t - 1)), "tokens", count(m->parameters())};
}

// BERT-mini pretraining step: 128 tokens, 15% of them predicted, NSP; vocabulary of 8,192.
Bench bert(int64_t batch) {
  const int64_t vocab = 8192, len = 128, picks = 19;
  auto m = zoo::BertForPreTraining(zoo::BertOptions::preset("mini", vocab));
  m->train();
  m->to(dev);
  auto opt = std::make_shared<torch::optim::AdamW>(m->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.01));
  auto update = optimizer_step(opt, m->parameters());
  auto ids = torch::randint(5, vocab, {batch, len}, torch::kLong).to(dev);
  auto types =
      torch::cat({torch::zeros({batch, len / 2}, torch::kLong), torch::ones({batch, len / 2}, torch::kLong)}, 1).to(dev);
  auto mask = torch::ones({batch, len}, torch::kLong).to(dev);
  auto rows = torch::arange(batch).repeat_interleave(picks);
  auto cols = torch::randint(1, len - 1, {batch * picks}, torch::kLong);
  auto positions = torch::stack({rows, cols}, 1).to(dev);
  auto targets = torch::randint(5, vocab, {batch * picks}, torch::kLong).to(dev);
  auto nsp = torch::randint(0, 2, {batch}, torch::kLong).to(dev);
  return {[=]() mutable {
            auto out = m->forward(ids, types, mask, positions);
            update(torch::nn::functional::cross_entropy(out.mlm_logits, targets) +
                   torch::nn::functional::cross_entropy(out.nsp_logits, nsp));
          },
          static_cast<double>(batch * len), "tokens", count(m->parameters())};
}

// CLIP: configs/clip_fashion_mnist.yaml's sizes, captions of 12 tokens, vocabulary of 512.
Bench clip(int64_t batch) {
  const int64_t vocab = 512, len = 12;
  auto m = zoo::CLIP(zoo::CLIPOptions(zoo::ViTOptions().patch_size(4).dim(128).depth(4).heads(4).mlp_dim(256),
                                      zoo::TextTransformerOptions(vocab).context_length(24).dim(128).depth(3).heads(4).mlp_dim(256).eot_id(3))
                         .embed_dim(128));
  m->train();
  m->to(dev);
  auto opt = std::make_shared<torch::optim::AdamW>(m->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  auto update = optimizer_step(opt, m->parameters());
  auto x = torch::rand({batch, 1, 28, 28}).to(dev);
  auto tokens = torch::randint(5, vocab, {batch, len}, torch::kLong).to(dev);
  tokens.select(1, 0).fill_(2);
  tokens.select(1, len - 1).fill_(3);
  return {[=]() mutable { update(zoo::clip_loss(m->forward(x, tokens).logits_per_image)); }, static_cast<double>(batch),
          "images", count(m->parameters())};
}

// VAE: configs/vae_fashion_mnist.yaml's sizes, -ELBO with a Bernoulli decoder, Adam.
Bench vae(int64_t batch) {
  auto m = zoo::VAE(zoo::VAEOptions().hidden_dim(400).latent_dim(20));
  m->train();
  m->to(dev);
  auto opt = std::make_shared<torch::optim::Adam>(m->parameters(), torch::optim::AdamOptions(1e-3));
  auto update = optimizer_step(opt, m->parameters());
  auto x = torch::rand({batch, 1, 28, 28}).to(dev);
  return {[=]() mutable {
            auto terms = m->elbo(x, m->forward(x));
            update((terms.reconstruction + terms.kl).mean());
          },
          static_cast<double>(batch), "images", count(m->parameters())};
}

// DCGAN: configs/gan_fashion_mnist.yaml's sizes; a discriminator step, then a generator step
// with the non-saturating loss, each Adam(2e-4, beta1 0.5).
Bench gan(int64_t batch) {
  auto o = zoo::DCGANOptions().latent_dim(100).generator_features(256).discriminator_features(128);
  auto g = zoo::Generator(o);
  auto d = zoo::Discriminator(o);
  g->train(), d->train();
  g->to(dev), d->to(dev);
  auto adam = torch::optim::AdamOptions(2e-4).betas({0.5, 0.999});
  auto g_opt = std::make_shared<torch::optim::Adam>(g->parameters(), adam);
  auto d_opt = std::make_shared<torch::optim::Adam>(d->parameters(), adam);
  auto real = (torch::rand({batch, 1, 28, 28}) * 2 - 1).to(dev);
  namespace F = torch::nn::functional;
  return {[=]() mutable {
            auto ones = torch::ones({batch}, dev), zeros = torch::zeros({batch}, dev);
            auto fake = g->forward(torch::randn({batch, 100}, dev));
            auto d_loss = F::binary_cross_entropy_with_logits(d->forward(real), ones) +
                          F::binary_cross_entropy_with_logits(d->forward(fake.detach()), zeros);
            d_opt->zero_grad();
            d_loss.backward();
            d_opt->step();
            // The G step sees D's new weights, not autocast's bf16 copies of the old ones, as in zoo's
            // trainer; a single optimizer's step needs no such call: the autocast scope's end clears them.
            at::autocast::clear_cache();
            auto g_loss = F::binary_cross_entropy_with_logits(d->forward(fake), ones);
            g_opt->zero_grad();
            g_loss.backward();
            g_opt->step();
          },
          static_cast<double>(batch), "images", count(g->parameters()) + count(d->parameters())};
}

zoo::UNet ddpm_unet() {
  return zoo::UNet(zoo::UNetOptions().base_channels(32).channel_mults({1, 2, 2}).res_blocks(2).attention_resolutions({7}).dropout(0.1).heads(4));
}

// DDPM: configs/ddpm_fashion_mnist.yaml's U-Net; the simple loss on epsilon at a random t, Adam.
Bench ddpm(int64_t batch) {
  auto unet = ddpm_unet();
  zoo::NoiseSchedule schedule;
  unet->train();
  unet->to(dev), schedule->to(dev);
  auto opt = std::make_shared<torch::optim::Adam>(unet->parameters(), torch::optim::AdamOptions(2e-4));
  auto update = optimizer_step(opt, unet->parameters());
  auto x0 = (torch::rand({batch, 1, 28, 28}) * 2 - 1).to(dev);
  return {[=]() mutable {
            auto t = torch::randint(0, 1000, {batch}, torch::TensorOptions(torch::kLong).device(dev));
            auto noise = torch::randn_like(x0);
            update(torch::mse_loss(unet->forward(schedule->q_sample(x0, t, noise), t), noise));
          },
          static_cast<double>(batch), "images", count(unet->parameters())};
}

// DDIM-50 sampling (eta 0, linspace spacing, x0 clipped) of a batch with the DDPM U-Net.
Bench ddim(int64_t batch) {
  auto unet = ddpm_unet();
  zoo::NoiseSchedule schedule;
  unet->eval();
  unet->to(dev), schedule->to(dev);
  zoo::Denoiser net = [unet](const torch::Tensor& x, const torch::Tensor& t) mutable { return unet->forward(x, t); };
  return {[=]() {
            torch::NoGradGuard no_grad;
            zoo::ddim_sample(*schedule, net, torch::randn({batch, 1, 28, 28}, dev), zoo::DDIMSamplerOptions().steps(50));
          },
          static_cast<double>(batch), "images sampled", count(unet->parameters())};
}

// Dropout alone: zoo::dropout at p = 0.1 on a (batch, 512) activation; batch 2,304 is the
// Transformer G2P feed-forward's inner activation (256 words x 9 positions).
Bench dropout(int64_t batch) {
  auto x = torch::randn({batch, 512}).to(dev);
  return {[=]() { zoo::dropout(x, 0.1, /*training=*/true); }, static_cast<double>(x.numel()), "elements", 0};
}

// Attention's two batched products, forward and backward, zoo::bmm's or torch::bmm's:
// (N, T, D) x (N, D, T), then (N, T, T) x (N, T, D); each product T x T x D multiply-adds.
Bench bmm(int64_t n, int64_t t, int64_t d, bool torch_bmm) {
  const auto on = torch::TensorOptions().device(dev).requires_grad(true);  // leaves on the device
  auto q = torch::randn({n, t, d}, on), k = torch::randn({n, d, t}, on), v = torch::randn({n, t, d}, on);
  return {[=]() {
            auto s = torch_bmm ? torch::bmm(q, k) : zoo::bmm(q, k);
            auto o = torch_bmm ? torch::bmm(s, v) : zoo::bmm(s, v);
            o.sum().backward();
          },
          static_cast<double>(n), "products", 0};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, steps = 20, warmup = 3;
  int64_t batch = 0, tokens = 50, head_dim = 32;
  std::string model, device = "cpu", impl = "zoo", precision = "fp32";
  // A whole number from 0 to 2^31 - 1, read as zoo's options are (zoo::parse_whole); -1 otherwise.
  auto whole = [](const char* text) -> int64_t {
    std::string why;
    const auto v = zoo::parse_whole(text, why);
    return v && *v >= 0 && *v <= INT32_MAX ? *v : -1;
  };
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    const std::string value = argv[i + 1];
    const bool number = k == "--threads" || k == "--steps" || k == "--warmup" || k == "--batch" || k == "--tokens" ||
                        k == "--head-dim";
    const int64_t n = number ? whole(argv[i + 1]) : 0;
    if (n < 0) {
      std::fprintf(stderr, "zoo_bench: %s %s: expected a whole number (decimal, 0 to 2147483647)\n", k.c_str(), value.c_str());
      return 2;
    }
    if (k == "--model") model = value;
    else if (k == "--device") device = value;
    else if (k == "--threads") threads = static_cast<int>(n);
    else if (k == "--steps") steps = static_cast<int>(n);
    else if (k == "--warmup") warmup = static_cast<int>(n);
    else if (k == "--batch") batch = n;
    else if (k == "--tokens") tokens = n;
    else if (k == "--head-dim") head_dim = n;
    else if (k == "--impl") impl = value;
    else if (k == "--precision") precision = argv[i + 1];
    else model.clear(), i = argc;
  }
  if (device == "cuda") {
    if (!torch::cuda::is_available()) {
      std::fprintf(stderr, "zoo_bench: --device cuda: this LibTorch sees no CUDA device; use --device cpu\n");
      return 2;
    }
    dev = torch::Device(torch::kCUDA, 0);
  } else if (device != "cpu") {
    std::fprintf(stderr, "zoo_bench: --device %s: expected cpu or cuda\n", device.c_str());
    return 2;
  }
  if (precision != "fp32" && precision != "bf16") {
    std::fprintf(stderr, "zoo_bench: --precision %s: expected fp32 or bf16\n", precision.c_str());
    return 2;
  }
  auto sync = [] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  Bench b;
  bool kept = false;
  try {
    kept = zoo::keep_freed_memory();  // as zoo train does (zoo::apply_runtime)
  } catch (const zoo::UsageError& e) {
    std::fprintf(stderr, "zoo_bench: %s\n", e.what());
    return 2;
  }
  torch::set_num_threads(threads);
  at::init_num_threads();  // as a training step's first parallel op does: it slows torch::bmm's products (README, Speed)
  torch::manual_seed(0);
  if (impl != "zoo" && model != "bmm") model.clear();  // --impl torch: bmm's alone
  if (model == "vit") b = vit(batch ? batch : 128);
  else if (model == "transformer") b = transformer(batch ? batch : 256);
  else if (model == "bert") b = bert(batch ? batch : 32);
  else if (model == "clip") b = clip(batch ? batch : 128);
  else if (model == "vae") b = vae(batch ? batch : 100);
  else if (model == "gan") b = gan(batch ? batch : 64);
  else if (model == "ddpm") b = ddpm(batch ? batch : 128);
  else if (model == "ddim") b = ddim(batch ? batch : 64);
  else if (model == "dropout") b = dropout(batch ? batch : 2304);
  else if (model == "bmm" && (impl == "zoo" || impl == "torch") && tokens > 0 && head_dim > 0)
    b = bmm(batch ? batch : 512, tokens, head_dim, impl == "torch");
  else {
    std::fprintf(stderr, "usage: zoo_bench --model vit|transformer|bert|clip|vae|gan|ddpm|ddim|dropout [--threads N] [--steps N] "
                         "[--warmup N] [--batch N] [--device cpu|cuda] [--precision fp32|bf16]\n"
                         "       zoo_bench --model bmm [--threads N] [--steps N] [--warmup N] [--batch N] [--tokens T] [--head-dim D] [--impl zoo|torch]: attention's "
                         "products, N of T x T x D\n");
    return 2;
  }
  auto step = [&] {
    zoo::Autocast amp(precision == "bf16", torch::kBFloat16, dev.type());
    b.step();
  };
  for (int i = 0; i < warmup; ++i) step();
  sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  sync();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\": \"%s\", \"model\": \"%s\", \"items_per_s\": %.2f, \"unit\": \"%s\", \"peak_rss_mib\": %.1f, "
              "\"params\": %lld, \"threads\": %d, \"device\": \"%s\", \"precision\": \"%s\", "
              "\"keep_freed_memory\": %s}\n",
              impl.c_str(), model.c_str(), steps * b.items_per_step / secs, b.unit.c_str(), ru.ru_maxrss / 1024.0,
              static_cast<long long>(b.params), threads, device.c_str(), precision.c_str(), kept ? "true" : "false");
  return 0;
}
