#include "train/data/fashion_mnist.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "train/config.h"
#include "train/data/to_device.h"

namespace fs = std::filesystem;

namespace zoo {

namespace {

/// Checks an IDX file's header and size (the magic number, `dims` big-endian counts, then one
/// unsigned byte per element); returns the number of items (the first count).
int64_t check_idx(const fs::path& file, uint32_t magic, int dims) {
  std::ifstream in(file, std::ios::binary);
  unsigned char header[16] = {};
  const auto header_size = static_cast<std::streamsize>(4 + 4 * dims);
  in.read(reinterpret_cast<char*>(header), header_size);
  auto word = [&](int i) {
    return (uint32_t{header[4 * i]} << 24) | (uint32_t{header[4 * i + 1]} << 16) | (uint32_t{header[4 * i + 2]} << 8) |
           uint32_t{header[4 * i + 3]};
  };
  const std::string fix = "; run scripts/fetch-data again (or set data.root)";
  if (in.gcount() != header_size || word(0) != magic)
    throw UsageError("data.root: " + file.string() + " is not an IDX file of unsigned bytes with " +
                     std::to_string(dims) + " dimension(s)" + fix);
  uintmax_t expected = static_cast<uintmax_t>(header_size);
  uintmax_t elements = 1;
  for (int i = 1; i <= dims; ++i) elements *= word(i);
  expected += elements;
  const auto size = fs::file_size(file);
  if (size != expected)
    throw UsageError("data.root: " + file.string() + " is " + std::to_string(size) + " bytes but its header says " +
                     std::to_string(expected) + " (truncated?)" + fix);
  return static_cast<int64_t>(word(1));
}

}  // namespace

ImageSet load_fashion_mnist(const std::string& root, const std::string& split, int64_t val_size, int64_t limit) {
  const bool test = split == "test";
  if (!test && split != "train" && split != "val")
    throw UsageError("split '" + split + "': expected train, val or test");
  const auto prefix = test ? "t10k" : "train";
  for (auto suffix : {"-images-idx3-ubyte", "-labels-idx1-ubyte"}) {
    auto f = fs::path(root) / (std::string(prefix) + suffix);
    if (fs::exists(f) && !fs::is_regular_file(f))
      throw UsageError("data.root: " + f.string() + " is not a regular file (a directory, pipe or device); delete it and "
                       "run scripts/fetch-data (or set data.root)");
    if (!fs::is_regular_file(f))
      throw UsageError("data.root: " + f.string() + " is missing; run scripts/fetch-data (or set data.root)");
  }
  const auto images_file = fs::path(root) / (std::string(prefix) + "-images-idx3-ubyte");
  const auto labels_file = fs::path(root) / (std::string(prefix) + "-labels-idx1-ubyte");
  const auto n_images = check_idx(images_file, 2051, 3), n_labels = check_idx(labels_file, 2049, 1);
  if (n_images != n_labels)
    throw UsageError("data.root: " + images_file.string() + " holds " + std::to_string(n_images) + " images but " +
                     labels_file.string() + " " + std::to_string(n_labels) + " labels; run scripts/fetch-data again");
  ImageSet set;
  try {
    torch::data::datasets::MNIST ds(root, test ? torch::data::datasets::MNIST::Mode::kTest
                                               : torch::data::datasets::MNIST::Mode::kTrain);
    set.images = ds.images();
    set.labels = ds.targets().to(torch::kLong);
    if (set.labels.numel() > 0 && (set.labels.min().item<int64_t>() < 0 || set.labels.max().item<int64_t>() > 9))
      throw UsageError("data.root: " + labels_file.string() +
                       " holds a label outside 0-9 (Fashion-MNIST has 10 "
                       "classes); run scripts/fetch-data again");
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw UsageError("data.root: " + root + ": not valid Fashion-MNIST IDX files (" + what.substr(0, what.find('\n')) +
                     "); delete the folder and run scripts/fetch-data");
  }
  if (!test) {
    const int64_t n = set.size();
    if (val_size < 0 || val_size >= n) throw UsageError("data.val_size: must be in [0, " + std::to_string(n) + ")");
    const auto lo = split == "train" ? 0 : n - val_size, hi = split == "train" ? n - val_size : n;
    set.images = set.images.slice(0, lo, hi);
    set.labels = set.labels.slice(0, lo, hi);
  }
  if (limit > 0 && limit < set.size()) {
    set.images = set.images.slice(0, 0, limit);
    set.labels = set.labels.slice(0, 0, limit);
  }
  set.images = set.images.contiguous();
  set.labels = set.labels.contiguous();
  return set;
}

namespace {
// 0, 1, ..., n - 1 (int64) on `device`: pixel rows or columns.
torch::Tensor arange_on(int64_t n, const torch::Device& device) {
  return torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(device));
}
}  // namespace

torch::Tensor augment_crop_flip(const torch::Tensor& images, int64_t padding, bool hflip) {
  auto x = images;
  const auto b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (padding > 0) {
    // Offsets come from the CPU generator on every device, so runs repeat and resume exactly.
    auto offsets = to_device(torch::randint(0, 2 * padding + 1, {b, 2}, torch::kLong), x.device());
    auto padded = torch::constant_pad_nd(x, {padding, padding, padding, padding}, 0.0);  // (B, C, H+2p, W+2p)
    auto rows = (offsets.select(1, 0).unsqueeze(1) + arange_on(h, x.device()))
                    .view({b, 1, h, 1})
                    .expand({b, c, h, w + 2 * padding});
    auto cols = (offsets.select(1, 1).unsqueeze(1) + arange_on(w, x.device())).view({b, 1, 1, w}).expand({b, c, h, w});
    x = padded.gather(2, rows).gather(3, cols);  // (B, C, H, W)
  }
  if (hflip) {
    auto flip = to_device((torch::rand({b}) < 0.5).view({b, 1, 1, 1}), x.device());
    x = torch::where(flip, x.flip({3}), x);
  }
  return x;
}

torch::Tensor random_erasing(const torch::Tensor& images, double p) {
  constexpr double kMinArea = 0.02, kMaxArea = 0.4, kMinAspect = 0.3;
  constexpr int kTries = 10;
  const auto b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  // Per image: erase or not, then per try an area, an aspect ratio, and the corner's two fractions.
  auto u = torch::rand({b, 1 + 4 * kTries}, torch::kDouble);
  auto boxes = torch::zeros({b, 4}, torch::kLong);  // rows [y0, y1), columns [x0, x1); empty = no erasing
  auto ua = u.accessor<double, 2>();
  auto bx = boxes.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    if (ua[i][0] >= p) continue;
    for (int t = 0; t < kTries; ++t) {
      const double* r = &ua[i][1 + 4 * t];
      const double area = (kMinArea + (kMaxArea - kMinArea) * r[0]) * static_cast<double>(h * w);
      const double aspect = kMinAspect + (1 / kMinAspect - kMinAspect) * r[1];
      const auto eh = static_cast<int64_t>(std::lround(std::sqrt(area * aspect)));
      const auto ew = static_cast<int64_t>(std::lround(std::sqrt(area / aspect)));
      if (eh < 1 || ew < 1 || eh > h || ew > w) continue;
      const auto y0 = std::min(h - eh, static_cast<int64_t>(r[2] * static_cast<double>(h - eh + 1)));
      const auto x0 = std::min(w - ew, static_cast<int64_t>(r[3] * static_cast<double>(w - ew + 1)));
      bx[i][0] = y0, bx[i][1] = y0 + eh, bx[i][2] = x0, bx[i][3] = x0 + ew;
      break;
    }
  }
  const auto device = images.device();
  auto box = to_device(boxes, device);
  auto rows = arange_on(h, device).view({1, h, 1}), cols = arange_on(w, device).view({1, 1, w});
  auto col = [&](int64_t k) { return box.select(1, k).view({b, 1, 1}); };
  auto inside = (rows >= col(0)) & (rows < col(1)) & (cols >= col(2)) & (cols < col(3));  // (B, H, W)
  auto noise = to_device(torch::rand({b, c, h, w}), device).to(images.scalar_type());
  return torch::where(inside.unsqueeze(1), noise, images);
}

}  // namespace zoo
