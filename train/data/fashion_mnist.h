// Fashion-MNIST (Xiao et al. 2017) through LibTorch's MNIST (IDX) reader.
// Splits: "train" = the first 60000 - val_size training images, "val" = the last
// val_size training images, "test" = the 10,000 test images.
#pragma once

#include <string>

#include <torch/torch.h>

namespace zoo {

struct ImageSet {
  torch::Tensor images;  // (N, 1, 28, 28) float in [0, 1]
  torch::Tensor labels;  // (N) int64
  int64_t size() const { return images.size(0); }
};

constexpr const char* kFashionMnistClasses[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
/// Per-pixel mean and standard deviation of the training images.
constexpr double kFashionMnistMean = 0.2860, kFashionMnistStd = 0.3530;

/// Loads a split from `root` (the folder scripts/fetch-data fills). `limit` > 0 keeps the
/// first `limit` examples. UsageError naming the folder when files are missing or bad.
ImageSet load_fashion_mnist(const std::string& root, const std::string& split, int64_t val_size, int64_t limit = 0);

/// Random crop with zero padding and random horizontal flip, per image: (B, C, H, W).
torch::Tensor augment_crop_flip(const torch::Tensor& images, int64_t padding, bool hflip);

/// Random erasing (Zhong et al. 2017, Algorithm 1): with probability `p` an image (B, C, H, W)
/// in [0, 1] gets one rectangle of uniform noise, its area 2-40% of the image and its aspect
/// ratio (height / width) uniform in [0.3, 1/0.3], the paper's settings. A box that does not fit
/// is drawn again (up to 10 times, else the image is left alone); its corner is uniform among
/// the positions where it fits. Draws come from the CPU generator, as augment_crop_flip's.
torch::Tensor random_erasing(const torch::Tensor& images, double p);

}  // namespace zoo
