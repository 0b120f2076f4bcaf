// Task: CLIP (Radford et al. 2021) on Fashion-MNIST images paired with captions written from
// templates and class names (train/data/fashion_captions.h). Evaluation: zero-shot
// classification from held-out prompts (prompt ensembling), class-level image-text retrieval,
// and a linear probe on the frozen image features.
#include "train/tasks/clip.h"
#include "train/tasks/embed.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <iomanip>
#include <map>

#include <spdlog/spdlog.h>

#include "models/clip.h"
#include "models/wordpiece.h"
#include "train/checkpoint.h"
#include "train/data/fashion_captions.h"
#include "train/data/sequences.h"
#include "train/image.h"
#include "train/tasks/fashion_mnist_task.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

namespace F = torch::nn::functional;

/// Multinomial logistic regression on standardised features, fitted by L-BFGS (as the CLIP
/// paper's linear probes): returns the accuracy on (test_x, test_y).
double linear_probe(torch::Tensor train_x, const torch::Tensor& train_y, torch::Tensor test_x, const torch::Tensor& test_y,
                    double l2) {
  auto mean = train_x.mean(0, true), std = train_x.std(0, /*unbiased=*/true, /*keepdim=*/true) + 1e-6;
  train_x = (train_x - mean) / std;
  test_x = (test_x - mean) / std;
  const int64_t d = train_x.size(1), k = 10;
  auto w = torch::zeros({d, k}, torch::requires_grad());
  auto b = torch::zeros({k}, torch::requires_grad());
  torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(300).line_search_fn("strong_wolfe"));
  torch::AutoGradMode grad(true);
  opt.step([&] {
    opt.zero_grad();
    auto loss = F::cross_entropy(torch::matmul(train_x, w) + b, train_y) + l2 * w.pow(2).sum();
    loss.backward();
    return loss;
  });
  torch::NoGradGuard no_grad;
  return (torch::matmul(test_x, w) + b).argmax(1).eq(test_y).to(torch::kDouble).mean().item<double>();
}

class CLIPTask : public FashionMnistTask, public ZeroShotClassifier, public Embedder {
 public:
  CLIPTask(const Config& cfg, const TaskContext& ctx)
      : FashionMnistTask(cfg, ctx, cfg.get_int("data.crop_padding")),
        linear_probe_(cfg.get_bool("eval.linear_probe")),
        probe_limit_(cfg.get_int("eval.probe_train_limit")),
        retrieval_size_(cfg.get_int("eval.retrieval_size")) {
    const int64_t probe_images = probe_limit_ > 0 ? std::min<int64_t>(probe_limit_, 60000 - val_size_) : 60000 - val_size_;
    if (linear_probe_ && probe_images < 2 && !ctx.state)  // the probe standardises each feature by its spread
      throw UsageError("eval.probe_train_limit: the linear probe would be fitted on " + std::to_string(probe_images) +
                       " training image (with data.val_size " + std::to_string(val_size_) +
                       "); it needs 2 or more, or eval.linear_probe=false");
    if (ctx.state) {
      vocab_ = read_vocab(*ctx.state);
    } else {
      std::vector<std::string> texts;
      for (int c = 0; c < 10; ++c)
        for (auto& p : train_prompts(c)) texts.push_back(p);
      WordPieceTrainOptions o;
      o.vocab_size = cfg.get_int("data.vocab_size");
      vocab_ = WordPiece::train(texts, o);
    }
    auto vision = ViTOptions()
                      .image_size(28)
                      .in_channels(1)
                      .num_classes(0)
                      .patch_size(cfg.get_int("model.patch_size"))
                      .dim(cfg.get_int("model.vision_dim"))
                      .depth(cfg.get_int("model.vision_depth"))
                      .heads(cfg.get_int("model.vision_heads"))
                      .mlp_dim(cfg.get_int("model.vision_mlp_dim"))
                      .dropout(cfg.get_float("model.dropout"));
    auto text = TextTransformerOptions(vocab_.size())
                    .context_length(cfg.get_int("model.context_length"))
                    .dim(cfg.get_int("model.text_dim"))
                    .depth(cfg.get_int("model.text_depth"))
                    .heads(cfg.get_int("model.text_heads"))
                    .mlp_dim(cfg.get_int("model.text_mlp_dim"))
                    .dropout(cfg.get_float("model.dropout"))
                    .eot_id(vocab_.sep_id());
    model_ = CLIP(CLIPOptions(vision, text).embed_dim(cfg.get_int("model.embed_dim")));
    model_->to(device_);
    for (int c = 0; c < 10; ++c) {
      std::vector<std::vector<int64_t>> ids;
      for (const auto& p : train_prompts(c)) ids.push_back(tokens_of(p));
      train_captions_.push_back(std::move(ids));
    }
  }

  torch::nn::Module& model() override { return *model_; }
  std::pair<std::string, bool> best_metric() const override { return {"zero_shot_accuracy", true}; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss_sum, correct;  // on the device (StepLog)
    double seen = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      auto batch = next_labelled_batch();
      const auto& x = batch.images;
      const auto& y = batch.labels;
      // Each image gets a caption of its class: a random training template and name.
      auto labels = batch.labels_cpu.contiguous();
      auto picks = torch::randint(static_cast<int64_t>(train_captions_[0].size()), {labels.size(0)}, torch::kLong);
      std::vector<const std::vector<int64_t>*> captions;
      for (int64_t i = 0; i < labels.size(0); ++i)
        captions.push_back(&train_captions_[static_cast<size_t>(labels.data_ptr<int64_t>()[i])]
                                           [static_cast<size_t>(picks.data_ptr<int64_t>()[i])]);
      auto out = model_->forward(normalize(x), pad(captions));
      auto loss = clip_loss(out.logits_per_image);
      ctx.backward(loss);
      accumulate(loss_sum, loss);
      // In-batch retrieval: is the best-matching caption one of the image's class?
      auto best = out.logits_per_image.argmax(1);
      accumulate(correct, y.index_select(0, best).eq(y).sum());
      seen += static_cast<double>(y.size(0));
    }
    ctx.step_optimizer();
    model_->clamp_logit_scale_();
    StepLog log;
    log.deferred = {{"loss", {loss_sum, static_cast<double>(ctx.accumulation())}},
                    {"batch_class_accuracy", {correct, seen}},
                    {"logit_scale", {model_->scale().detach(), 1.0}}};
    return log;
  }

  Scalars evaluate(const std::string& split) override {
    const auto& set = eval_set(split);
    auto images = image_embeddings(set.images, /*projected=*/true);  // (N, E)
    const auto& y = set.labels;
    Scalars m{{"images", static_cast<double>(y.size(0))}};
    // Zero-shot: each class's held-out prompts, embedded, averaged and re-normalised.
    auto heldout = class_embeddings(/*heldout=*/true), seen = class_embeddings(/*heldout=*/false);
    m["zero_shot_accuracy"] = torch::matmul(images, heldout.t()).argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
    m["seen_prompt_accuracy"] = torch::matmul(images, seen.t()).argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
    // Retrieval among the first retrieval_size images, each captioned with one held-out prompt
    // of its class; a hit is a neighbour of the same class.
    const auto n = std::min<int64_t>(retrieval_size_, y.size(0));
    if (n > 0) {
      std::vector<std::string> captions;
      auto yc = y.slice(0, 0, n).cpu();
      for (int64_t i = 0; i < n; ++i) {
        const auto prompts = heldout_prompts(static_cast<int>(yc[i].item<int64_t>()));
        captions.push_back(prompts[static_cast<size_t>(i) % prompts.size()]);
      }
      auto texts = encode_texts(captions);  // (n, E)
      auto sim = torch::matmul(images.slice(0, 0, n), texts.t());
      auto yn = y.slice(0, 0, n);
      for (int64_t k : {1, 5}) {
        if (k > n) continue;  // recall@5 among fewer than 5 candidates is not measured
        auto i2t = yn.index({std::get<1>(sim.topk(k, 1))}).eq(yn.unsqueeze(1)).any(1);  // (n)
        auto t2i = yn.index({std::get<1>(sim.t().topk(k, 1))}).eq(yn.unsqueeze(1)).any(1);
        m["image_to_text_r" + std::to_string(k)] = i2t.to(torch::kDouble).mean().item<double>();
        m["text_to_image_r" + std::to_string(k)] = t2i.to(torch::kDouble).mean().item<double>();
      }
    }
    if (linear_probe_) {
      auto train = load_fashion_mnist(root_, "train", val_size_, probe_limit_);
      if (train.size() < 2) {  // standardised by the spread over one image (none): NaN weights, a wrong accuracy
        spdlog::warn("linear probe skipped: {} training image{} (eval.probe_train_limit, data.val_size); it needs 2 or more",
                     train.size(), train.size() == 1 ? "" : "s");
        return m;
      }
      auto train_f = image_embeddings(train.images.to(device_), /*projected=*/false).cpu();
      auto test_f = image_embeddings(set.images, /*projected=*/false).cpu();
      m["linear_probe_accuracy"] = linear_probe(train_f, train.labels, test_f, y.cpu(), 1e-4);
    }
    return m;
  }

  torch::Tensor label_embeddings(const std::vector<std::string>& labels) override {
    TORCH_CHECK(!labels.empty(), "label_embeddings: no labels");
    // Each label's prompts (every template), all labels' encoded together in batches: (L, T, E),
    // averaged over the templates and normalised.
    const auto& k = fashion_captions();
    std::vector<std::string> prompts;
    std::map<std::vector<int64_t>, size_t> seen;  // each label's prompts as tokens: labels that read the same
    for (size_t i = 0; i < labels.size(); ++i) {
      std::vector<int64_t> ids;
      for (const auto* templates : {&k.train_templates, &k.heldout_templates})
        for (const auto& t : *templates) {
          prompts.push_back(fill_template(t, labels[i]));
          const auto one = tokens_of(prompts.back());
          ids.insert(ids.end(), one.begin(), one.end());
        }
      if (const auto [at, fresh] = seen.emplace(std::move(ids), i); !fresh)
        throw UsageError("labels '" + labels[at->second] + "' and '" + labels[i] + "' are the same text to this model (" +
                         (vocab_.lower_case() ? "lower-cased, accents stripped, " : "") + "cut at " +
                         std::to_string(model_->text->options.context_length()) +
                         " tokens), so they would share its probability; give each label once");
    }
    return in_eval_mode(*model_, [&] {
      auto texts = encode_texts(prompts);
      const auto n = static_cast<int64_t>(labels.size());
      return F::normalize(texts.view({n, texts.size(0) / n, -1}).mean(1), F::NormalizeFuncOptions().dim(1));
    });
  }

  torch::Tensor classify(const torch::Tensor& images, const torch::Tensor& labels) override {
    const auto width = model_->text_projection->options.out_features();
    TORCH_CHECK(labels.dim() == 2 && labels.size(1) == width, "classify: expected label embeddings (L, ", width,
                "), got ", labels.sizes());
    return in_eval_mode(*model_, [&] {
      auto x = image_embeddings(images, /*projected=*/true);  // (N, E)
      return torch::softmax(model_->scale() * torch::matmul(x, labels.to(x.device()).t()), -1).to(torch::kFloat).cpu();
    });
  }

  /// zoo embed: unit-length vectors of the joint space, so that an image's dot product with a
  /// text's is their cosine similarity (what zero-shot and retrieval rank by).
  bool embeds_images() const override { return true; }
  bool embeds_texts() const override { return true; }
  torch::Tensor embed_images(const torch::Tensor& images) override {
    return in_eval_mode(*model_, [&] { return image_embeddings(images, /*projected=*/true).to(torch::kFloat).cpu(); });
  }
  torch::Tensor embed_texts(const std::vector<std::string>& texts) override {
    return in_eval_mode(*model_, [&] { return encode_texts(texts).to(torch::kFloat).cpu(); });
  }

  /// test_images/: the first test image of each class as PNG (to try `zoo zero-shot` on), and
  /// zero_shot.txt: what the model says of each, over the ten first class names.
  void write_outputs(const std::string& dir) override {
    const auto& set = eval_set("test");
    auto labels = set.labels.cpu();
    const auto& k = fashion_captions();
    std::vector<std::string> names;
    for (const auto& n : k.train_names) names.push_back(n.front());
    const auto classes = label_embeddings(names);
    fs::create_directories(fs::path(dir) / "test_images");
    std::ostringstream txt;  // written whole at the end: a full disk is an error, not a short file
    txt << "# the first test image of each class: file, true class, zero-shot prediction (probability)\n";
    for (int c = 0; c < 10; ++c) {
      int64_t i = 0;
      while (i < labels.size(0) && labels[i].item<int64_t>() != c) ++i;
      if (i == labels.size(0)) continue;
      auto image = set.images[i].cpu();  // (1, 28, 28)
      std::string file = names[static_cast<size_t>(c)];
      for (auto& ch : file)
        if (ch == ' ' || ch == '-') ch = '_';
      file = "test_images/" + std::to_string(c) + "-" + file + ".png";
      write_png((fs::path(dir) / file).string(), image);
      const auto p = classify(image.unsqueeze(0), classes)[0];
      const auto best = p.argmax().item<int64_t>();
      txt << file << "\t" << names[static_cast<size_t>(c)] << "\t" << names[static_cast<size_t>(best)] << " (" << std::fixed
          << std::setprecision(3) << p[best].item<double>() << ")\n";
    }
    atomic_write((fs::path(dir) / "zero_shot.txt").string(), txt.str());
  }

  void save_state(torch::serialize::OutputArchive& a) override {
    FashionMnistTask::save_state(a);
    a.write("vocab", c10::IValue(vocab_.to_text()));
  }

 private:
  torch::Tensor normalize(const torch::Tensor& x) const { return (x - kFashionMnistMean) / kFashionMnistStd; }

  /// [CLS] text [SEP], cut at model.context_length tokens. A [SEP] in the text (zoo embed's, a
  /// zero-shot label) is a UsageError: the feature is read at the first, so it would end the text.
  std::vector<int64_t> tokens_of(const std::string& text) const {
    try {
      return clip_tokens(vocab_, text, model_->text->options.context_length());
    } catch (const std::invalid_argument& e) {
      size_t cut = std::min<size_t>(text.size(), 60);
      while (cut > 0 && cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
      throw UsageError(std::string(e.what()) + ": \"" + text.substr(0, cut) + (cut < text.size() ? "..." : "") +
                       "\"; remove the [SEP]");
    }
  }

  torch::Tensor pad(const std::vector<const std::vector<int64_t>*>& rows) const {
    return pad_sequences(rows, vocab_.pad_id(), device_);
  }

  /// (n, E) unit-length joint-space embeddings of texts, on the device, 512 texts a batch (each
  /// padded to its batch's longest).
  torch::Tensor encode_texts(const std::vector<std::string>& texts) {
    std::vector<std::vector<int64_t>> tokens;
    tokens.reserve(texts.size());
    for (const auto& t : texts) tokens.push_back(tokens_of(t));
    const auto width = model_->text_projection->options.out_features();
    return in_batches(static_cast<int64_t>(tokens.size()), 512, width, [&](int64_t begin, int64_t end) {
      std::vector<const std::vector<int64_t>*> rows;
      for (auto j = begin; j < end; ++j) rows.push_back(&tokens[static_cast<size_t>(j)]);
      return model_->encode_text(pad(rows));
    });
  }

  /// Unit-length joint-space embeddings (projected) or the encoder's features, in batches of 500.
  torch::Tensor image_embeddings(const torch::Tensor& images, bool projected) {
    const auto width = projected ? model_->visual_projection->options.out_features() : model_->visual->options.dim();
    return in_batches(images.size(0), 500, width, [&](int64_t begin, int64_t end) {
      auto x = normalize(images.slice(0, begin, end).to(device_, torch::kFloat));  // as the other embedders take them
      return projected ? model_->encode_image(x) : model_->image_features(x);
    });
  }

  /// (10, E): per class, the normalised mean of its prompts' embeddings.
  torch::Tensor class_embeddings(bool heldout) {
    std::vector<torch::Tensor> rows;
    for (int c = 0; c < 10; ++c)
      rows.push_back(F::normalize(encode_texts(heldout ? heldout_prompts(c) : train_prompts(c)).mean(0),
                                  F::NormalizeFuncOptions().dim(0)));
    return torch::stack(rows);
  }

  bool linear_probe_;
  int64_t probe_limit_, retrieval_size_;
  WordPiece vocab_;
  CLIP model_{nullptr};
  std::vector<std::vector<std::vector<int64_t>>> train_captions_;  // class -> prompt -> token ids
};

void add_keys(Schema& s) {
  add_fashion_mnist_keys(s, /*hflip=*/true, /*eval_limit=*/0);
  s.add_int("model.patch_size", 4, "image patch side (must divide 28)", 1, 28)
      .add_int("model.vision_dim", 128, "image encoder width", 8, 16384)
      .add_int("model.vision_depth", 4, "image encoder blocks", 1, 48)
      .add_int("model.vision_heads", 4, "image encoder heads (must divide model.vision_dim)", 1, 1024)
      .add_int("model.vision_mlp_dim", 256, "image encoder MLP width", 1, 65536)
      .add_int("model.text_dim", 128, "text encoder width", 8, 16384)
      .add_int("model.text_depth", 3, "text encoder blocks", 1, 48)
      .add_int("model.text_heads", 4, "text encoder heads (must divide model.text_dim)", 1, 1024)
      .add_int("model.text_mlp_dim", 256, "text encoder MLP width", 1, 65536)
      .add_int("model.context_length", 24, "most tokens per caption, [CLS] and [SEP] included", 4, 512)
      .add_int("model.embed_dim", 128, "joint embedding width", 1, 16384)
      .add_float("model.dropout", 0.0, "dropout in both encoders", 0.0, 0.9)
      .add_int("data.crop_padding", 2, "random-crop padding in pixels (0 = no crop)", 0, 14)
      .add_int("data.vocab_size", 512, "size of the WordPiece vocabulary built from the training captions", 16, 100000)
      .fixed("data.vocab_size")
      .add_bool("eval.linear_probe", true, "fit a logistic-regression probe on frozen image features at each evaluation")
      .add_int("eval.probe_train_limit", 0, "training images the probe is fitted on (0 = all)", 0)
      .add_int("eval.retrieval_size", 1000, "images (and captions) in the retrieval evaluation", 0);
}

}  // namespace

TaskInfo clip_fashion_mnist_task() {
  return {"clip_fashion_mnist", "CLIP (Radford et al. 2021): Fashion-MNIST images and captions, zero-shot", add_keys,
          [](const Config& cfg, const TaskContext& ctx) -> std::unique_ptr<Task> {
            for (const auto* side : {"vision", "text"}) {
              const auto dim = cfg.get_int(std::string("model.") + side + "_dim");
              const auto heads = cfg.get_int(std::string("model.") + side + "_heads");
              if (dim % heads != 0)
                throw UsageError(std::string("model.") + side + "_heads: " + std::to_string(heads) + " does not divide model." +
                                 side + "_dim " + std::to_string(dim));
            }
            if (28 % cfg.get_int("model.patch_size") != 0)
              throw UsageError("model.patch_size: must divide the image side 28 (1, 2, 4, 7, 14 or 28)");
            return std::make_unique<CLIPTask>(cfg, ctx);
          }};
}

}  // namespace zoo
