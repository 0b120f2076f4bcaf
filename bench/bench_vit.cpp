// ViT training-step throughput in C++: the step zoo's trainer takes (AdamW, cross-entropy,
// gradient clipping), on fixed random batches of Fashion-MNIST's shape.
// Prints one JSON line: {"impl": "zoo", "images_per_s": ..., "peak_rss_mib": ..., "params": ...}.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/vit.h"

int main(int argc, char** argv) {
  int threads = 2, steps = 30, warmup = 5, batch = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--threads") threads = v;
    else if (k == "--steps") steps = v;
    else if (k == "--warmup") warmup = v;
    else if (k == "--batch") batch = v;
    else {
      std::fprintf(stderr, "usage: zoo_bench_vit [--threads N] [--steps N] [--warmup N] [--batch N]\n");
      return 2;
    }
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  zoo::ViT vit(zoo::ViTOptions().image_size(28).patch_size(4).dim(128).depth(6).heads(4).mlp_dim(256).dropout(0.1));
  vit->train();
  torch::optim::AdamW opt(vit->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(0.05));
  auto x = torch::rand({batch, 1, 28, 28});
  auto y = torch::randint(0, 10, {batch}, torch::kLong);
  int64_t params = 0;
  for (auto& p : vit->parameters()) params += p.numel();

  auto step = [&] {
    auto loss = torch::nn::functional::cross_entropy(vit->forward(x), y);
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(vit->parameters(), 1.0);
    opt.step();
  };
  for (int i = 0; i < warmup; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\": \"zoo\", \"images_per_s\": %.2f, \"peak_rss_mib\": %.1f, \"params\": %lld, \"threads\": %d}\n",
              steps * batch / secs, ru.ru_maxrss / 1024.0, static_cast<long long>(params), threads);
  return 0;
}
