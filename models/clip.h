// CLIP: Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
// Supervision". An image encoder (the ViT of models/vit.h) and a text Transformer with a
// causal mask whose output at the end-of-text token is the text feature; linear projections
// into a joint space, L2 normalisation, a learnable temperature (initialised to 0.07, the
// logit scale clamped at 100), and the symmetric cross-entropy over the batch's
// image-text similarity matrix (Sec. 2.3, Figure 3).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/common/norm.h"
#include "models/vit.h"
#include "models/wordpiece.h"

namespace zoo {

struct TextTransformerOptions {
  explicit TextTransformerOptions(int64_t vocab_size = 0) : vocab_size_(vocab_size) {}
  TORCH_ARG(int64_t, vocab_size);
  /// Longest token sequence (learned position embeddings).
  TORCH_ARG(int64_t, context_length) = 32;
  TORCH_ARG(int64_t, dim) = 128;
  TORCH_ARG(int64_t, depth) = 3;
  TORCH_ARG(int64_t, heads) = 4;
  TORCH_ARG(int64_t, mlp_dim) = 256;
  TORCH_ARG(double, dropout) = 0.0;
  /// The end-of-text token: the text feature is the output at its first occurrence. 3 is [SEP]
  /// in a vocabulary of WordPiece::train; with a BERT vocab.txt, WordPiece::sep_id() (102).
  TORCH_ARG(int64_t, eot_id) = 3;
};

/// Token + learned position embeddings, pre-norm blocks under a causal mask, a final layer
/// norm; the feature of a text is its output at the end-of-text token. Because of the causal
/// mask, nothing after that token (padding) can change the feature.
class TextTransformerImpl : public torch::nn::Cloneable<TextTransformerImpl> {
 public:
  explicit TextTransformerImpl(const TextTransformerOptions& options);
  void reset() override;
  /// tokens (B, T), each row holding eot_id -> features (B, dim).
  torch::Tensor forward(const torch::Tensor& tokens);
  /// tokens (B, T) -> every position's output (B, T, dim).
  torch::Tensor encode(const torch::Tensor& tokens);

  TextTransformerOptions options;
  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor position_embedding;  // (T, dim)
  torch::nn::ModuleList blocks{nullptr};
  zoo::LayerNorm ln_final{nullptr};
};
TORCH_MODULE(TextTransformer);

struct CLIPOptions {
  CLIPOptions(ViTOptions vision, TextTransformerOptions text) : vision_(vision), text_(text) {}
  /// The image encoder; its num_classes is ignored (the [CLS] feature is projected).
  TORCH_ARG(ViTOptions, vision);
  TORCH_ARG(TextTransformerOptions, text);
  /// Width of the joint embedding space.
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// Initial temperature tau: logit scale 1 / tau.
  TORCH_ARG(double, init_temperature) = 0.07;
  /// The logit scale never exceeds this (Sec. 2.5: "clipped to prevent scaling the logits by more than 100").
  TORCH_ARG(double, max_logit_scale) = 100.0;
};

struct CLIPOutput {
  torch::Tensor logits_per_image;  // (B_img, B_txt): scale * cos(image_i, text_j)
  torch::Tensor logits_per_text;   // its transpose
  torch::Tensor image_embeds;      // (B_img, E), unit length
  torch::Tensor text_embeds;       // (B_txt, E), unit length
};

class CLIPImpl : public torch::nn::Cloneable<CLIPImpl> {
 public:
  explicit CLIPImpl(const CLIPOptions& options);
  void reset() override;

  /// images (B, C, H, W) -> unit-length embeddings (B, E).
  torch::Tensor encode_image(const torch::Tensor& images);
  /// tokens (B, T) -> unit-length embeddings (B, E).
  torch::Tensor encode_text(const torch::Tensor& tokens);
  /// The image encoder's [CLS] feature before the projection (what a linear probe reads).
  torch::Tensor image_features(const torch::Tensor& images);
  /// exp(logit_scale): at most max_logit_scale, as clamp_logit_scale_ keeps the parameter.
  torch::Tensor scale();
  /// Clamps the logit-scale parameter itself into [0, log(max_logit_scale)] (after an optimizer step).
  void clamp_logit_scale_();
  CLIPOutput forward(const torch::Tensor& images, const torch::Tensor& tokens);

  CLIPOptions options;
  ViT visual{nullptr};
  TextTransformer text{nullptr};
  torch::nn::Linear visual_projection{nullptr}, text_projection{nullptr};
  torch::Tensor logit_scale;  // scalar, log(1 / tau)
};
TORCH_MODULE(CLIP);

/// A text as CLIP's text encoder reads it, as zoo trains it: [CLS], the text's WordPiece ids cut to
/// context_length - 2, then [SEP], the end-of-text token (TextTransformerOptions::eot_id =
/// vocab.sep_id()). A text that holds [SEP] would end there: std::invalid_argument.
std::vector<int64_t> clip_tokens(const WordPiece& vocab, const std::string& text, int64_t context_length);

/// clip_tokens of each text, padded with vocab.pad_id() to the longest: (B, T) int64 on the CPU,
/// what CLIP::encode_text takes once moved to the model's device (the causal mask keeps padding
/// after [SEP] from the features). No texts: (0, 0), which encode_text answers with (0, E).
torch::Tensor clip_tokenize(const WordPiece& vocab, const std::vector<std::string>& texts, int64_t context_length);

/// The symmetric contrastive loss: (CE(logits, I) over rows + CE(logits^T, I) over rows) / 2,
/// where the i-th image and i-th text are the positive pair. logits_per_image (B, B).
torch::Tensor clip_loss(const torch::Tensor& logits_per_image);

}  // namespace zoo
