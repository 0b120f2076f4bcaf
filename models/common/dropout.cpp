#include "models/common/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <mutex>

namespace zoo {
namespace {

/// SplitMix64's output function: a bijective mix of a 64-bit counter (Steele, Lea and Flood
/// 2014, "Fast splittable pseudorandom number generators").
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void check_probability(double p) {
  TORCH_CHECK(p >= 0 && p <= 1, "dropout probability must be in [0, 1], got ", p);
}

uint64_t seed_from_default_generator() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

}  // namespace

torch::Tensor dropout_mask(const torch::Tensor& like, double p) {
  check_probability(p);
  torch::NoGradGuard no_grad;
  auto mask = torch::empty(like.sizes(), like.options().memory_format(torch::MemoryFormat::Contiguous)
                                             .requires_grad(false));
  if (!like.device().is_cpu()) {
    mask.bernoulli_(1 - p);
    return p < 1 ? mask.div_(1 - p) : mask;
  }
  const uint64_t seed = seed_from_default_generator();
  // Element i is kept when the top 32 bits of its hash are >= p * 2^32: probability 1 - p
  // to within 2^-32.
  const uint64_t threshold = static_cast<uint64_t>(p * 4294967296.0);
  const int64_t n = mask.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mask.scalar_type(), "zoo::dropout_mask", [&] {
    scalar_t* out = mask.data_ptr<scalar_t>();
    const scalar_t keep = static_cast<scalar_t>(p < 1 ? 1.0 / (1.0 - p) : 0.0);
    const scalar_t drop = static_cast<scalar_t>(0);
    at::parallel_for(0, n, 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const uint64_t z = mix64(seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL);
        out[i] = (z >> 32) >= threshold ? keep : drop;
      }
    });
  });
  return mask;
}

torch::Tensor dropout(const torch::Tensor& x, double p, bool training) {
  check_probability(p);
  if (!training || p == 0) return x;
  if (!x.device().is_cpu()) return torch::dropout(x, p, /*train=*/true);
  return x * dropout_mask(x, p);
}

DropoutImpl::DropoutImpl(double p_) : p(p_) { reset(); }

void DropoutImpl::reset() {
  check_probability(p);
}

torch::Tensor DropoutImpl::forward(const torch::Tensor& x) { return zoo::dropout(x, p, is_training()); }

void DropoutImpl::pretty_print(std::ostream& stream) const { stream << "zoo::Dropout(p=" << p << ")"; }

}  // namespace zoo
