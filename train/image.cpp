#include "train/image.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#include <stb_image.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "train/config.h"

#include "train/checkpoint.h"

namespace zoo {

torch::Tensor make_grid(const torch::Tensor& images, int64_t columns, int64_t padding, int64_t scale) {
  TORCH_CHECK(images.dim() == 4, "make_grid expects (N, C, H, W), got ", images.sizes());
  auto x = images.detach().to(torch::kCPU, torch::kFloat).clamp(0, 1);
  if (scale > 1) x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3);
  const auto n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  columns = std::max<int64_t>(1, std::min(columns, n));
  const auto rows = (n + columns - 1) / columns;
  auto grid = torch::ones({c, rows * (h + padding) + padding, columns * (w + padding) + padding});
  for (int64_t i = 0; i < n; ++i) {
    const auto r = i / columns, col = i % columns;
    grid.narrow(1, padding + r * (h + padding), h).narrow(2, padding + col * (w + padding), w).copy_(x[i]);
  }
  return grid;
}

void write_png(const std::string& path, const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3), "write_png expects (1|3, H, W)");
  auto bytes = (image.detach().to(torch::kCPU, torch::kFloat).clamp(0, 1) * 255.0)
                   .round()
                   .to(torch::kUInt8)
                   .permute({1, 2, 0})
                   .contiguous();
  const int h = static_cast<int>(bytes.size(0)), w = static_cast<int>(bytes.size(1)), c = static_cast<int>(bytes.size(2));
  std::string out;
  stbi_write_png_to_func(
      [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); },
      &out, w, h, c, bytes.data_ptr<uint8_t>(), w * c);
  TORCH_CHECK(!out.empty(), "PNG encoding failed for ", path);
  atomic_write(path, out);
}

torch::Tensor read_image_gray(const std::string& path, int64_t size) {
  // The file is read once, up to kMaxImageBytes (a pipe can be read only once; /dev/zero never
  // ends), and its header checked before it is decoded: a small file can declare a huge image,
  // and decoding takes width x height x channels bytes (a 46,000-pixel square: 6 GB).
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw UsageError(path + ": is a directory; give a PNG, JPEG, BMP or GIF file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(path + ": cannot be opened (missing, or not readable); give a PNG, JPEG, BMP or GIF file");
  std::string bytes;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    bytes.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<int64_t>(bytes.size()) > kMaxImageBytes)
      throw UsageError(path + ": more than " + std::to_string(kMaxImageBytes >> 20) +
                       " MB, more than an image read here may take; shrink it first");
  }
  if (in.bad()) throw UsageError(path + ": cannot be read; give a PNG, JPEG, BMP or GIF file");
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, c = 0;
  if (stbi_info_from_memory(data, len, &w, &h, &c) && static_cast<int64_t>(w) * h > kMaxImagePixels)
    throw UsageError(path + ": " + std::to_string(w) + "x" + std::to_string(h) + " pixels, more than the " +
                     std::to_string(kMaxImagePixels / 1000000) + " million read here; shrink it first (it becomes " +
                     std::to_string(size) + "x" + std::to_string(size) + " anyway)");
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(stbi_load_from_memory(data, len, &w, &h, &c, 0), stbi_image_free);
  if (!pixels) {
    const char* why = stbi_failure_reason();
    throw UsageError(path + ": not an image that can be read (" + (why && *why ? why : "truncated or damaged") +
                     "); give a PNG, JPEG, BMP or GIF file");
  }
  auto img = torch::from_blob(pixels.get(), {h, w, c}, torch::kUInt8).to(torch::kFloat).div(255.0);  // (H, W, C)
  torch::Tensor grey;
  if (c >= 3) grey = img.select(2, 0) * 0.299 + img.select(2, 1) * 0.587 + img.select(2, 2) * 0.114;
  else grey = img.select(2, 0);
  if (c == 2 || c == 4) grey = grey * img.select(2, c - 1);  // over black
  auto x = grey.view({1, 1, h, w});
  namespace F = torch::nn::functional;
  if (h != size || w != size) {
    auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size});
    x = (h >= size && w >= size) ? F::interpolate(x, opts.mode(torch::kArea))
                                 : F::interpolate(x, opts.mode(torch::kBilinear).align_corners(false));
  }
  return x.clamp(0, 1).contiguous();
}

}  // namespace zoo
