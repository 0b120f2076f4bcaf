// An outside project that links zoo::train: rebuilds a run's task from a checkpoint and prints
// what `zoo embed` would for the two images main.cpp makes.
#include <iomanip>
#include <iostream>

#include <train/tasks/embed.h>
#include <train/trainer.h>

/// One value a line, to the digits that read back as the same float.
void print_values(const torch::Tensor& t) {
  const auto flat = t.to(torch::kFloat).contiguous().flatten();
  for (int64_t i = 0; i < flat.numel(); ++i) std::cout << std::setprecision(9) << flat[i].item<float>() << "\n";
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer_train CHECKPOINT\n";
    return 2;
  }
  auto task = zoo::load_task(argv[1], {"train.device=cpu"});
  auto* embedder = dynamic_cast<zoo::Embedder*>(task.get());
  if (!embedder) return 1;
  torch::manual_seed(0);
  const auto images = torch::rand({2, 1, 28, 28});
  print_values(embedder->embed_images(images));
  return 0;
}
