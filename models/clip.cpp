#include "models/clip.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/common/sequences.h"

namespace zoo {

std::vector<int64_t> clip_tokens(const WordPiece& vocab, const std::string& text, int64_t context_length) {
  TORCH_CHECK(context_length >= 2, "clip_tokens: context_length must hold [CLS] and [SEP], got ", context_length);
  const auto pieces = vocab.encode(text);
  if (std::find(pieces.begin(), pieces.end(), vocab.sep_id()) != pieces.end())
    throw std::invalid_argument("a text holds [SEP], which ends a CLIP text (its feature is read there)");
  std::vector<int64_t> ids{vocab.cls_id()};
  for (size_t i = 0; i < pieces.size() && static_cast<int64_t>(ids.size()) < context_length - 1; ++i)
    ids.push_back(pieces[i]);
  ids.push_back(vocab.sep_id());  // end of text
  return ids;
}

torch::Tensor clip_tokenize(const WordPiece& vocab, const std::vector<std::string>& texts, int64_t context_length) {
  std::vector<std::vector<int64_t>> rows;
  for (const auto& t : texts) rows.push_back(clip_tokens(vocab, t, context_length));
  std::vector<const std::vector<int64_t>*> ptrs;
  for (const auto& r : rows) ptrs.push_back(&r);
  return pad_rows(ptrs, vocab.pad_id());
}

TextTransformerImpl::TextTransformerImpl(const TextTransformerOptions& options_) : options(options_) { reset(); }

void TextTransformerImpl::reset() {
  TORCH_CHECK(options.vocab_size() > 0, "TextTransformer: vocab_size must be set (the tokenizer's size), got ",
              options.vocab_size());
  TORCH_CHECK(options.eot_id() >= 0 && options.eot_id() < options.vocab_size(), "TextTransformer: eot_id ",
              options.eot_id(), " is not a token of a vocabulary of ", options.vocab_size());
  const auto d = options.dim();
  token_embedding = register_module("token_embedding", torch::nn::Embedding(options.vocab_size(), d));
  position_embedding = register_parameter("position_embedding", torch::randn({options.context_length(), d}) * 0.01);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.depth(); ++i)
    blocks->push_back(EncoderBlock(EncoderBlockOptions(d, options.heads(), options.mlp_dim()).dropout(options.dropout())));
  ln_final = register_module("ln_final", zoo::LayerNorm(torch::nn::LayerNormOptions({d})));
  torch::NoGradGuard no_grad;
  token_embedding->weight.normal_(0.0, 0.02);  // as in CLIP's initialisation
}

torch::Tensor TextTransformerImpl::encode(const torch::Tensor& tokens) {
  const auto t = tokens.size(1);
  TORCH_CHECK(t <= options.context_length(), "text of ", t, " tokens is longer than the context length ",
              options.context_length());
  auto x = token_embedding(tokens) + position_embedding.slice(0, 0, t);  // (B, T, D)
  auto mask = causal_mask(t, torch::TensorOptions().device(tokens.device()));
  for (auto& block : *blocks) x = block->as<EncoderBlock>()->forward(x, mask);
  return ln_final(x);
}

torch::Tensor TextTransformerImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "TextTransformer: expected tokens (B, T), got ", tokens.sizes());
  if (tokens.size(0) == 0) return torch::zeros({0, options.dim()}, position_embedding.options());  // no texts
  auto is_eot = tokens.eq(options.eot_id());
  TORCH_CHECK(is_eot.any(1).all().item<bool>(), "every text must hold the end-of-text token ", options.eot_id());
  auto position = is_eot.to(torch::kLong).argmax(1);  // the first end-of-text token of each row
  auto out = encode(tokens);
  return out.index({torch::arange(tokens.size(0), position.options()), position});  // (B, D)
}

CLIPImpl::CLIPImpl(const CLIPOptions& options_) : options(options_) { reset(); }

void CLIPImpl::reset() {
  auto vision = options.vision();
  vision.num_classes(0);
  visual = register_module("visual", ViT(vision));
  text = register_module("text", TextTransformer(options.text()));
  visual_projection =
      register_module("visual_projection", torch::nn::Linear(torch::nn::LinearOptions(vision.dim(), options.embed_dim()).bias(false)));
  text_projection = register_module(
      "text_projection", torch::nn::Linear(torch::nn::LinearOptions(options.text().dim(), options.embed_dim()).bias(false)));
  logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / options.init_temperature())));
}

torch::Tensor CLIPImpl::image_features(const torch::Tensor& images) { return visual(images); }

torch::Tensor CLIPImpl::encode_image(const torch::Tensor& images) {
  return torch::nn::functional::normalize(visual_projection(visual(images)),
                                          torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

torch::Tensor CLIPImpl::encode_text(const torch::Tensor& tokens) {
  return torch::nn::functional::normalize(text_projection(text(tokens)),
                                          torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

// Only the parameter is clamped (clamp_logit_scale_), as in CLIP's code: a clamp here too would
// stop the gradient for good at the cap, float32's log(100) being a hair over (exp: 100.0000076).
torch::Tensor CLIPImpl::scale() { return logit_scale.exp(); }

void CLIPImpl::clamp_logit_scale_() {
  torch::NoGradGuard no_grad;
  logit_scale.clamp_(0.0, std::log(options.max_logit_scale()));
}

CLIPOutput CLIPImpl::forward(const torch::Tensor& images, const torch::Tensor& tokens) {
  auto img = encode_image(images), txt = encode_text(tokens);
  auto logits = scale() * torch::matmul(img, txt.t());  // (B, B): scaled cosine similarities
  return {logits, logits.t(), img, txt};
}

torch::Tensor clip_loss(const torch::Tensor& logits_per_image) {
  auto labels = torch::arange(logits_per_image.size(0), logits_per_image.options().dtype(torch::kLong));
  auto l = logits_per_image.to(torch::kFloat);
  return (torch::nn::functional::cross_entropy(l, labels) + torch::nn::functional::cross_entropy(l.t(), labels)) / 2.0;
}

}  // namespace zoo
