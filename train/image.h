// PNG output: image grids a person can look at.
#pragma once

#include <string>

#include <torch/torch.h>

namespace zoo {

/// Tiles images (N, C, H, W), values in [0, 1] (C = 1 or 3), into a grid of `columns`
/// columns with `padding` pixels between tiles, each pixel drawn `scale` x `scale`.
torch::Tensor make_grid(const torch::Tensor& images, int64_t columns, int64_t padding = 2, int64_t scale = 1);

/// Writes an image (C, H, W) in [0, 1] as PNG, atomically.
void write_png(const std::string& path, const torch::Tensor& image);

/// Reads an image file (PNG, JPEG, BMP, GIF, ...; any size, 1 to 4 channels) as one grey
/// image (1, 1, size, size) in [0, 1]: colour becomes luminance (ITU-R BT.601 weights), an
/// alpha channel is composited over black, and the image is resized (area averaging when
/// shrinking, bilinear when growing). UsageError naming the file when it can't be read.
torch::Tensor read_image_gray(const std::string& path, int64_t size);
/// The most pixels read_image_gray decodes (64 million: 8,000 x 8,000), and the largest file it
/// reads (256 MB); a larger image or file is a UsageError.
constexpr int64_t kMaxImagePixels = 64000000, kMaxImageBytes = int64_t{256} << 20;

}  // namespace zoo
