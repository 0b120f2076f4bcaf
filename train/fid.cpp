#include "train/fid.h"

#include "models/vit.h"
#include "train/config.h"
#include "train/data/fashion_mnist.h"
#include "train/tasks/task.h"
#include "train/trainer.h"

namespace zoo {

double frechet_distance(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  TORCH_CHECK(a_in.dim() == 2 && b_in.dim() == 2 && a_in.size(1) == b_in.size(1), "FID needs (N, D) features");
  auto a = a_in.to(torch::kCPU, torch::kFloat64), b = b_in.to(torch::kCPU, torch::kFloat64);
  auto mu_a = a.mean(0), mu_b = b.mean(0);
  auto cov = [](const torch::Tensor& x, const torch::Tensor& mu) {
    auto c = x - mu;
    return c.t().mm(c) / static_cast<double>(x.size(0) - 1);
  };
  auto s_a = cov(a, mu_a), s_b = cov(b, mu_b);
  // Tr (S_a S_b)^(1/2) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix.
  auto [w, v] = torch::linalg_eigh(s_a, "L");
  auto sqrt_a = v.mm(torch::diag(w.clamp_min(0).sqrt())).mm(v.t());
  auto m = sqrt_a.mm(s_b).mm(sqrt_a);
  auto eig = torch::linalg_eigvalsh((m + m.t()) / 2, "L").clamp_min(0);
  const double tr_sqrt = eig.sqrt().sum().item<double>();
  return (mu_a - mu_b).pow(2).sum().item<double>() + s_a.trace().item<double>() + s_b.trace().item<double>() -
         2 * tr_sqrt;
}

FeatureExtractor::FeatureExtractor(const std::string& checkpoint, torch::Device device) : device_(device) {
  Config cfg;
  // runtime false: the classifier's stored threads, seed and determinism stay out of the run
  // that measures FID (they reseeded its generator and reset its threads at the first evaluation).
  try {
    classifier_ = load_task(checkpoint, {"train.device=" + device.str()}, &cfg, /*runtime=*/false);
  } catch (const UsageError& e) {
    throw UsageError(std::string("eval.fid_classifier: ") + e.what());
  }
  if (cfg.task() != "vit_fashion_mnist")
    throw UsageError("eval.fid_classifier: " + checkpoint + " holds a " + cfg.task() +
                     " run; FID needs a vit_fashion_mnist checkpoint (zoo train --config configs/vit_fashion_mnist.yaml)");
}

FeatureExtractor::~FeatureExtractor() = default;

torch::Tensor FeatureExtractor::features(const torch::Tensor& images, int64_t batch) {
  torch::NoGradGuard no_grad;
  auto* vit = classifier_->model().as<ViTImpl>();
  return in_batches(images.size(0), batch, vit->options.dim(), [&](int64_t begin, int64_t end) {
    auto x = images.slice(0, begin, end).to(device_, torch::kFloat);
    x = (x - kFashionMnistMean) / kFashionMnistStd;
    return vit->features(x).cpu();  // the [CLS] feature before the head, (B, D)
  });
}

}  // namespace zoo
