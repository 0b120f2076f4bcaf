// An outside project that links zoo::models alone. Without arguments: builds a ViT and runs a
// forward pass. With an exported checkpoint of the tiny ViT run that run.sh trains: loads its
// weights as the README says (the "model" archive of a `zoo export` file, into a ViT of the run's
// model keys) and prints the pre-logits features of two images, to compare with zoo::train's.
#include <iomanip>
#include <iostream>

#include <models/vit.h>

/// One value a line, to the digits that read back as the same float.
void print_values(const torch::Tensor& t) {
  const auto flat = t.to(torch::kFloat).contiguous().flatten();
  for (int64_t i = 0; i < flat.numel(); ++i) std::cout << std::setprecision(9) << flat[i].item<float>() << "\n";
}

int main(int argc, char** argv) {
  // run.sh's config: model: {patch_size: 7, dim: 32, depth: 2, heads: 4, mlp_dim: 64}
  zoo::ViT vit(zoo::ViTOptions().image_size(28).patch_size(7).dim(32).depth(2).heads(4).mlp_dim(64).num_classes(10));
  if (argc > 1) {
    torch::serialize::InputArchive checkpoint, model;
    checkpoint.load_from(argv[1]);
    checkpoint.read("model", model);
    vit->load(model);
  }
  vit->eval();
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const auto images = torch::rand({2, 1, 28, 28});  // grey, in [0, 1]
  if (argc > 1) {
    const auto features = vit->features((images - 0.2860) / 0.3530);  // standardised as in training
    print_values(features);
    return 0;
  }
  auto logits = vit->forward(images);
  std::cout << "logits " << logits.sizes() << "\n";
  return logits.sizes() == torch::IntArrayRef({2, 10}) && logits.isfinite().all().item<bool>() ? 0 : 1;
}
