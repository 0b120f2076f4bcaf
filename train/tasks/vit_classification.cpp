// Task: ViT image classification on Fashion-MNIST (cross-entropy; crop, flip and random erasing).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "models/vit.h"
#include "train/checkpoint.h"
#include "train/image.h"
#include "train/tasks/embed.h"
#include "train/tasks/fashion_mnist_task.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

class ViTClassification : public FashionMnistTask, public Embedder {
 public:
  ViTClassification(const Config& cfg, const TaskContext& ctx)
      : FashionMnistTask(cfg, ctx, cfg.get_int("data.crop_padding")),
        erasing_(cfg.get_float("data.random_erasing")),
        smoothing_(cfg.get_float("loss.label_smoothing")) {
    model_ = ViT(ViTOptions()
                     .image_size(28)
                     .in_channels(1)
                     .num_classes(10)
                     .patch_size(cfg.get_int("model.patch_size"))
                     .dim(cfg.get_int("model.dim"))
                     .depth(cfg.get_int("model.depth"))
                     .heads(cfg.get_int("model.heads"))
                     .mlp_dim(cfg.get_int("model.mlp_dim"))
                     .dropout(cfg.get_float("model.dropout"))
                     .attention_dropout(cfg.get_float("model.attention_dropout")));
    model_->to(device_);
  }

  torch::nn::Module& model() override { return *model_; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss_sum, correct;  // on the device (StepLog)
    double seen = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      auto [x, y] = next_batch();
      if (erasing_ > 0) x = random_erasing(x, erasing_);
      auto logits = model_->forward(normalize(x));
      auto loss = torch::nn::functional::cross_entropy(
          logits.to(torch::kFloat), y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(smoothing_));
      ctx.backward(loss);
      accumulate(loss_sum, loss);
      accumulate(correct, (logits.argmax(1) == y).sum());
      seen += static_cast<double>(y.size(0));
    }
    ctx.step_optimizer();
    StepLog log;
    log.deferred["loss"] = {loss_sum, static_cast<double>(ctx.accumulation())};
    log.deferred["accuracy"] = {correct, seen};
    return log;
  }

  Scalars evaluate(const std::string& split) override {
    const auto& set = eval_set(split);
    double loss_sum = 0, correct = 0;
    for (int64_t i = 0; i < set.size(); i += 500) {
      const auto n = std::min<int64_t>(500, set.size() - i);
      auto x = set.images.slice(0, i, i + n);
      auto y = set.labels.slice(0, i, i + n);
      auto logits = model_->forward(normalize(x)).to(torch::kFloat);
      loss_sum += torch::nn::functional::cross_entropy(
                      logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                      .item<double>();
      correct += (logits.argmax(1) == y).sum().item<double>();
    }
    const auto n = static_cast<double>(set.size());
    return {{"loss", loss_sum / n}, {"accuracy", correct / n}, {"examples", n}};
  }

  std::pair<std::string, bool> best_metric() const override { return {"accuracy", true}; }

  /// predictions.png: 64 test images, green frame = right, red = wrong; predictions.txt names the classes.
  void write_outputs(const std::string& dir) override {
    const auto& set = eval_set("test");
    const int64_t n = std::min<int64_t>(64, set.size());
    auto x = set.images.slice(0, 0, n).cpu();
    auto y = set.labels.slice(0, 0, n).cpu();
    auto pred = in_eval_mode(*model_, [&] { return model_->forward(normalize(x.to(device_))).argmax(1).cpu(); });
    auto right = (pred == y).view({n, 1, 1, 1});
    auto frame = torch::where(right, torch::tensor({0.1f, 0.8f, 0.1f}).view({1, 3, 1, 1}),
                              torch::tensor({0.9f, 0.1f, 0.1f}).view({1, 3, 1, 1}))
                     .expand({n, 3, 32, 32})
                     .clone();
    frame.narrow(2, 2, 28).narrow(3, 2, 28).copy_(x.expand({n, 3, 28, 28}));
    write_png((fs::path(dir) / "predictions.png").string(), make_grid(frame, 8, 2, 3));
    std::ostringstream txt;  // written whole at the end: a full disk is an error, not a short file
    txt << "# first " << n << " Fashion-MNIST test images, row by row: predicted (true)\n";
    for (int64_t i = 0; i < n; ++i)
      txt << i << "\t" << kFashionMnistClasses[pred[i].item<int64_t>()] << " (" << kFashionMnistClasses[y[i].item<int64_t>()]
          << ")" << (pred[i].item<int64_t>() == y[i].item<int64_t>() ? "" : "  WRONG") << "\n";
    atomic_write((fs::path(dir) / "predictions.txt").string(), txt.str());
  }

  /// zoo embed: the [CLS] token after the final layer norm, the input of the head (timm's
  /// pre-logits features; FID reads the same, train/fid.cpp), in batches of 500.
  bool embeds_images() const override { return true; }
  torch::Tensor embed_images(const torch::Tensor& images) override {
    return in_eval_mode(*model_, [&] {
      return in_batches(images.size(0), 500, model_->options.dim(), [&](int64_t begin, int64_t end) {
        return model_->features(normalize(images.slice(0, begin, end).to(device_, torch::kFloat))).to(torch::kFloat).cpu();
      });
    });
  }

 private:
  torch::Tensor normalize(const torch::Tensor& x) const { return (x - kFashionMnistMean) / kFashionMnistStd; }

  ViT model_{nullptr};
  double erasing_, smoothing_;
};

void add_keys(Schema& s) {
  add_fashion_mnist_keys(s, /*hflip=*/true, /*eval_limit=*/0);
  s.add_int("model.patch_size", 4, "patch side in pixels (must divide 28)", 1, 28)
      .add_int("model.dim", 128, "token width D", 8, 16384)
      .add_int("model.depth", 6, "encoder blocks", 1, 48)
      .add_int("model.heads", 4, "attention heads (must divide model.dim)", 1, 1024)
      .add_int("model.mlp_dim", 256, "hidden width of each block's MLP", 1, 65536)
      .add_float("model.dropout", 0.0, "dropout after embeddings, attention and in the MLP", 0.0, 0.9)
      .add_float("model.attention_dropout", 0.0, "dropout on attention probabilities", 0.0, 0.9)
      .add_int("data.crop_padding", 2, "random-crop padding in pixels (0 = no crop)", 0, 14)
      .add_float("data.random_erasing", 0.0, "probability of random erasing (Zhong et al. 2017) per training image", 0.0,
                 1.0)
      .add_float("loss.label_smoothing", 0.0, "label smoothing of the cross-entropy", 0.0, 0.5);
}

}  // namespace

TaskInfo vit_fashion_mnist_task() {
  return {"vit_fashion_mnist", "ViT (Dosovitskiy et al. 2020) classifying Fashion-MNIST", add_keys,
          [](const Config& cfg, const TaskContext& ctx) -> std::unique_ptr<Task> {
            if (cfg.get_int("model.dim") % cfg.get_int("model.heads") != 0)
              throw UsageError("model.heads: " + std::to_string(cfg.get_int("model.heads")) +
                               " does not divide model.dim " + std::to_string(cfg.get_int("model.dim")));
            if (28 % cfg.get_int("model.patch_size") != 0)
              throw UsageError("model.patch_size: must divide the image side 28 (1, 2, 4, 7, 14 or 28)");
            return std::make_unique<ViTClassification>(cfg, ctx);
          }};
}

}  // namespace zoo
