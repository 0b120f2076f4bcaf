// The data side that the Fashion-MNIST tasks share: the train/val/test splits, shuffled and
// sharded training batches whose position is checkpointed, and the common data.* keys.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "train/data/fashion_mnist.h"
#include "train/data/sampler.h"
#include "train/data/to_device.h"
#include "train/tasks/task.h"

namespace zoo {

/// data.root, data.val_size, data.train_limit, data.eval_limit, data.hflip.
inline void add_fashion_mnist_keys(Schema& s, bool hflip, int64_t eval_limit) {
  s.add_string("data.root", "data/fashion-mnist", "folder with the four IDX files (scripts/fetch-data)")
      .add_int("data.val_size", 5000, "last training images held out for validation", 0, 59999)
      .add_int("data.train_limit", 0, "use only the first N training images (0 = all)", 0)
      .add_int("data.eval_limit", eval_limit, "evaluate on the first N images of a split (0 = all)", 0)
      .add_bool("data.hflip", hflip, "random horizontal flips");
}

class FashionMnistTask : public Task {
 public:
  /// `crop_padding` > 0 adds random crops with that much zero padding to the training batches.
  FashionMnistTask(const Config& cfg, const TaskContext& ctx, int64_t crop_padding = 0)
      : device_(ctx.device),
        root_(cfg.get_string("data.root")),
        val_size_(cfg.get_int("data.val_size")),
        eval_limit_(cfg.get_int("data.eval_limit")),
        train_limit_(cfg.get_int("data.train_limit")),
        batch_(cfg.get_int("train.batch_size")),
        accumulate_(cfg.get_int("train.accumulate")),
        crop_padding_(crop_padding),
        hflip_(cfg.get_bool("data.hflip")),
        seed_(static_cast<uint64_t>(cfg.get_int("train.seed"))),
        rank_(ctx.rank),
        world_(ctx.world_size) {}

  int64_t examples_per_step() const override { return batch_ * accumulate_; }
  void save_state(torch::serialize::OutputArchive& a) override { sampler().save(a); }
  void load_state(torch::serialize::InputArchive& a) override { sampler().load(a); }

 protected:
  struct Batch {
    torch::Tensor images, labels;  // on the device
    torch::Tensor labels_cpu;      // the same labels on the CPU, for host work that should not wait for the GPU
  };
  /// The next training batch: images (B, 1, 28, 28) in [0, 1], augmented, and labels (B).
  Batch next_labelled_batch() {
    auto idx = sampler().next();
    auto on_device = to_device(idx, device_);
    return {augment_crop_flip(train_.images.index_select(0, on_device), crop_padding_, hflip_),
            train_.labels.index_select(0, on_device), train_labels_cpu_.index_select(0, idx)};
  }
  /// next_labelled_batch's images and labels on the device.
  std::pair<torch::Tensor, torch::Tensor> next_batch() {
    auto b = next_labelled_batch();
    return {b.images, b.labels};
  }
  /// Training validates on "val" and ends with "test": a run without either (or with a damaged
  /// file) fails now, not after its steps.
  void before_training() override {
    eval_set("val");
    eval_set("test");
  }

  /// The first data.eval_limit images of "val" or "test", on the device, loaded once.
  const ImageSet& eval_set(const std::string& split) {
    auto& set = split == "test" ? test_ : val_;
    if (!set.images.defined()) {
      set = load_fashion_mnist(root_, split, val_size_, eval_limit_);
      if (set.size() == 0)
        throw UsageError(
            "data.val_size: is 0, so there is no val split; set data.val_size above 0 (training validates on it), or "
            "evaluate with --split test");
      set.images = set.images.to(device_);
      set.labels = set.labels.to(device_);
    }
    return set;
  }

  torch::Device device_;
  std::string root_;
  int64_t val_size_, eval_limit_, train_limit_, batch_, accumulate_, crop_padding_;
  bool hflip_;
  uint64_t seed_;
  int64_t rank_, world_;

 private:
  EpochSampler& sampler() {
    if (!sampler_) {
      train_ = load_fashion_mnist(root_, "train", val_size_, train_limit_);
      train_labels_cpu_ = train_.labels;
      train_.images = train_.images.to(device_);
      train_.labels = train_.labels.to(device_);
      sampler_ = std::make_unique<EpochSampler>(train_.size(), batch_, seed_, rank_, world_);
    }
    return *sampler_;
  }
  ImageSet train_, val_, test_;
  torch::Tensor train_labels_cpu_;
  std::unique_ptr<EpochSampler> sampler_;
};

}  // namespace zoo
