// Shuffled mini-batches over [0, n): epoch e uses the permutation drawn from seed + e,
// so the order is a function of (seed, epoch, position) alone and --resume picks it up
// exactly. With world_size > 1 each rank takes every world_size-th example (sharding).
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace zoo {

class EpochSampler {
 public:
  EpochSampler(int64_t n, int64_t batch_size, uint64_t seed, int64_t rank = 0, int64_t world_size = 1)
      : n_(n), batch_(batch_size), seed_(seed), rank_(rank), world_(world_size) {
    TORCH_CHECK(n_ / world_ >= batch_, "dataset of ", n_, " examples is smaller than one batch of ", batch_, " x ",
                world_, " ranks");
  }

  /// Indices of the next batch (int64, CPU); drops the last incomplete batch of an epoch.
  torch::Tensor next() {
    if (!order_.defined() || cursor_ + batch_ > order_.size(0)) {
      if (order_.defined()) ++epoch_, cursor_ = 0;
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + static_cast<uint64_t>(epoch_));
      order_ = torch::randperm(n_, gen, torch::kLong).slice(0, rank_, n_, world_);
    }
    auto idx = order_.slice(0, cursor_, cursor_ + batch_);
    cursor_ += batch_;
    return idx;
  }

  int64_t epoch() const { return epoch_; }
  void save(torch::serialize::OutputArchive& a) const {
    a.write("epoch", c10::IValue(epoch_));
    a.write("cursor", c10::IValue(order_.defined() ? cursor_ : int64_t{-1}));
  }
  void load(torch::serialize::InputArchive& a) {
    c10::IValue e, c;
    a.read("epoch", e);
    a.read("cursor", c);
    epoch_ = e.toInt();
    order_ = torch::Tensor();
    if (c.toInt() >= 0) {  // rebuild this epoch's order, then move to the saved position
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + static_cast<uint64_t>(epoch_));
      order_ = torch::randperm(n_, gen, torch::kLong).slice(0, rank_, n_, world_);
      cursor_ = c.toInt();
    }
  }

 private:
  int64_t n_, batch_;
  uint64_t seed_;
  int64_t rank_, world_;
  int64_t epoch_ = 0, cursor_ = 0;
  torch::Tensor order_;
};

}  // namespace zoo
