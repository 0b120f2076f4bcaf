// A shared library (a plugin, a Python extension) that links zoo::models: it links only if
// zoo::models is position-independent code. run.sh builds it beside the programs.
#include <models/vit.h>

extern "C" int64_t zoo_consumer_plugin_parameters() {
  zoo::ViT vit(zoo::ViTOptions().patch_size(7).dim(32).depth(2).heads(4).mlp_dim(64));
  int64_t n = 0;
  for (const auto& p : vit->parameters()) n += p.numel();
  return n;
}
