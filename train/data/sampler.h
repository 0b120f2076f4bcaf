// Shuffled mini-batches over [0, n): epoch e uses the permutation drawn from seed + e,
// so the order is a function of (seed, epoch, position) alone and --resume picks it up
// exactly. With world_size > 1 each rank takes every world_size-th example (sharding).
#pragma once

#include <sstream>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "train/config.h"

namespace zoo {

/// A data position read back from a checkpoint: UsageError when no sampler wrote it. (A cursor
/// past the end of an epoch is not one: after a resume with another batch size or data limit the
/// epoch ends there, and the next begins.)
inline void check_sampler_position(const c10::IValue& epoch, const c10::IValue& cursor) {
  // No run sees 2^40 epochs; a larger count is damage (and its next epoch would overflow).
  if (epoch.isInt() && cursor.isInt() && epoch.toInt() >= 0 && epoch.toInt() < (int64_t{1} << 40) && cursor.toInt() >= -1)
    return;
  std::ostringstream os;
  os << "the checkpoint's data position (epoch " << epoch << ", cursor " << cursor
     << ") is not one a sampler writes; the checkpoint is damaged: move it away to resume from the one before";
  throw UsageError(os.str());
}

class EpochSampler {
 public:
  EpochSampler(int64_t n, int64_t batch_size, uint64_t seed, int64_t rank = 0, int64_t world_size = 1)
      : n_(n), batch_(batch_size), seed_(seed), rank_(rank), world_(world_size) {
    if (n_ / world_ < batch_)
      throw UsageError("train.batch_size: " + std::to_string(batch_) + " x " + std::to_string(world_) +
                       " ranks is more than the " + std::to_string(n_) +
                       " training examples; lower train.batch_size (or raise data.train_limit)");
  }

  /// Indices of the next batch (int64, CPU); drops the last incomplete batch of an epoch.
  torch::Tensor next() {
    if (!order_.defined() || cursor_ > order_.size(0) - batch_) {  // not cursor_ + batch_: a damaged cursor can't overflow
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
    check_sampler_position(e, c);
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

/// Mini-batches of examples of similar length, for sequences padded to the longest in the
/// batch (the batching of Vaswani et al. Sec. 5.1). Epoch e: a permutation drawn from
/// seed + e is cut into pools of `pool` batches; each pool is sorted by length and cut into
/// batches; the batches are shuffled. The order is a function of (seed, epoch, position),
/// so --resume picks it up exactly. With world_size > 1 each rank takes every
/// world_size-th batch.
class BucketSampler {
 public:
  BucketSampler(std::vector<int64_t> lengths, int64_t batch_size, uint64_t seed, int64_t rank = 0,
                int64_t world_size = 1, int64_t pool = 64)
      : lengths_(std::move(lengths)), batch_(batch_size), seed_(seed), rank_(rank), world_(world_size), pool_(pool) {
    if (static_cast<int64_t>(lengths_.size()) < batch_ * world_)
      throw UsageError("train.batch_size: " + std::to_string(batch_) + " x " + std::to_string(world_) +
                       " ranks is more than the " + std::to_string(lengths_.size()) +
                       " training examples; lower train.batch_size (or raise data.train_limit)");
  }

  /// Indices of the next batch (its last incomplete batch of an epoch is dropped).
  std::vector<int64_t> next() {
    if (batches_.empty() || cursor_ >= static_cast<int64_t>(batches_.size())) {
      if (!batches_.empty()) ++epoch_, cursor_ = 0;
      build();
    }
    return batches_[static_cast<size_t>(cursor_++)];
  }

  int64_t epoch() const { return epoch_; }
  void save(torch::serialize::OutputArchive& a) const {
    a.write("epoch", c10::IValue(epoch_));
    a.write("cursor", c10::IValue(batches_.empty() ? int64_t{-1} : cursor_));
  }
  void load(torch::serialize::InputArchive& a) {
    c10::IValue e, c;
    a.read("epoch", e);
    a.read("cursor", c);
    check_sampler_position(e, c);
    epoch_ = e.toInt();
    batches_.clear();
    if (c.toInt() >= 0) {
      build();
      cursor_ = c.toInt();
    }
  }

 private:
  void build() {
    const auto n = static_cast<int64_t>(lengths_.size());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_ * 1000003ULL + static_cast<uint64_t>(epoch_));
    auto perm = torch::randperm(n, gen, torch::kLong);
    const auto* p = perm.data_ptr<int64_t>();
    std::vector<std::vector<int64_t>> all;
    for (int64_t start = 0; start + batch_ <= n; start += batch_ * pool_) {
      std::vector<int64_t> chunk(p + start, p + std::min(n, start + batch_ * pool_));
      std::stable_sort(chunk.begin(), chunk.end(), [&](int64_t a, int64_t b) { return lengths_[a] < lengths_[b]; });
      for (size_t i = 0; i + batch_ <= chunk.size(); i += batch_) all.emplace_back(chunk.begin() + i, chunk.begin() + i + batch_);
    }
    auto order = torch::randperm(static_cast<int64_t>(all.size()), gen, torch::kLong);
    batches_.clear();
    const auto* o = order.data_ptr<int64_t>();
    for (int64_t i = rank_; i + (world_ - rank_ - 1) < order.size(0); i += world_)
      batches_.push_back(std::move(all[static_cast<size_t>(o[i])]));
    cursor_ = 0;
  }

  std::vector<int64_t> lengths_;
  int64_t batch_;
  uint64_t seed_;
  int64_t rank_, world_, pool_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::vector<std::vector<int64_t>> batches_;
};

}  // namespace zoo
