// Builds a ViT from the installed zoo package and runs a forward pass.
#include <iostream>

#include <models/vit.h>

int main() {
  torch::manual_seed(0);
  zoo::ViT vit(zoo::ViTOptions().image_size(28).patch_size(7).dim(32).depth(2).heads(4).num_classes(10));
  vit->eval();
  auto logits = vit->forward(torch::rand({2, 1, 28, 28}));
  std::cout << "logits " << logits.sizes() << "\n";
  return logits.sizes() == torch::IntArrayRef({2, 10}) && logits.isfinite().all().item<bool>() ? 0 : 1;
}
