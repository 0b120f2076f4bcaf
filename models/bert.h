// BERT: Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers for
// Language Understanding". Token + position + segment embeddings, a post-norm Transformer
// encoder with GELU, a pooler on [CLS]; heads for pretraining (masked LM tied to the input
// embeddings, next-sentence prediction) and for fine-tuning (token and sequence classification).
//
// Parameter names follow the usual BERT layout (embeddings.word_embeddings.weight,
// encoder.layer.0.attention.self.query.weight, ..., pooler.dense.weight; a pretraining model's
// heads under cls.predictions and cls.seq_relationship), so that weights map one to one onto
// other implementations' checkpoints.
#pragma once

#include <string>

#include <torch/torch.h>

#include "models/common/dropout.h"
#include "models/common/norm.h"

namespace zoo {

struct BertOptions {
  explicit BertOptions(int64_t vocab_size = 30522) : vocab_size_(vocab_size) {}
  /// The sizes of Turc et al. 2019 ("Well-Read Students Learn Better", Table 9) and of BERT-base:
  /// "tiny" L=2/H=128, "mini" L=4/H=256, "small" L=4/H=512, "medium" L=8/H=512, "base" L=12/H=768;
  /// heads H/64, feed-forward 4H. std::invalid_argument for another name.
  static BertOptions preset(const std::string& name, int64_t vocab_size);

  TORCH_ARG(int64_t, vocab_size);
  /// Width H of the hidden states.
  TORCH_ARG(int64_t, hidden_size) = 768;
  /// Encoder layers L.
  TORCH_ARG(int64_t, num_layers) = 12;
  /// Attention heads A; must divide hidden_size.
  TORCH_ARG(int64_t, num_heads) = 12;
  /// Inner width of the feed-forward layers (4H in the paper).
  TORCH_ARG(int64_t, intermediate_size) = 3072;
  /// Longest sequence (learned position embeddings).
  TORCH_ARG(int64_t, max_position) = 512;
  /// Segment (token type) vocabulary: A and B.
  TORCH_ARG(int64_t, type_vocab_size) = 2;
  /// Dropout on embeddings and on every sub-layer's output.
  TORCH_ARG(double, dropout) = 0.1;
  /// Dropout on attention probabilities.
  TORCH_ARG(double, attention_dropout) = 0.1;
  TORCH_ARG(double, layer_norm_eps) = 1e-12;
  /// Standard deviation of the normal initialisation of weights.
  TORCH_ARG(double, initializer_range) = 0.02;
};

struct BertOutput {
  torch::Tensor sequence;  // (B, T, H): the last layer's hidden states
  torch::Tensor pooled;    // (B, H): tanh(W h_[CLS] + b)
};

class BertEmbeddingsImpl : public torch::nn::Cloneable<BertEmbeddingsImpl> {
 public:
  explicit BertEmbeddingsImpl(const BertOptions& o);
  void reset() override;
  /// ids, segments (B, T) -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids);
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  zoo::LayerNorm LayerNorm{nullptr};
  Dropout dropout{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertEmbeddings);

/// Multi-head self-attention with separate query, key and value projections (BERT's layout).
class BertSelfAttentionImpl : public torch::nn::Cloneable<BertSelfAttentionImpl> {
 public:
  explicit BertSelfAttentionImpl(const BertOptions& o);
  void reset() override;
  /// x (B, T, H), mask additive (B, 1, 1, T) -> context (B, T, H)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertSelfAttention);

/// dense, dropout, then LayerNorm(x + residual): the post-norm residual of every sub-layer.
class BertResidualImpl : public torch::nn::Cloneable<BertResidualImpl> {
 public:
  BertResidualImpl(int64_t in, const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual);
  torch::nn::Linear dense{nullptr};
  zoo::LayerNorm LayerNorm{nullptr};
  Dropout dropout{nullptr};
  int64_t in_features;
  BertOptions options;
};
TORCH_MODULE(BertResidual);

class BertAttentionImpl : public torch::nn::Cloneable<BertAttentionImpl> {
 public:
  explicit BertAttentionImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  BertSelfAttention self{nullptr};
  BertResidual output{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertAttention);

class BertIntermediateImpl : public torch::nn::Cloneable<BertIntermediateImpl> {
 public:
  explicit BertIntermediateImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x) { return torch::gelu(dense(x)); }
  torch::nn::Linear dense{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertIntermediate);

class BertLayerImpl : public torch::nn::Cloneable<BertLayerImpl> {
 public:
  explicit BertLayerImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidual output{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertLayer);

class BertEncoderImpl : public torch::nn::Cloneable<BertEncoderImpl> {
 public:
  explicit BertEncoderImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask);
  torch::nn::ModuleList layer{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertEncoder);

class BertPoolerImpl : public torch::nn::Cloneable<BertPoolerImpl> {
 public:
  explicit BertPoolerImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& sequence) { return torch::tanh(dense(sequence.select(1, 0))); }
  torch::nn::Linear dense{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertPooler);

/// The encoder: embeddings, L layers, pooler.
class BertModelImpl : public torch::nn::Cloneable<BertModelImpl> {
 public:
  explicit BertModelImpl(const BertOptions& options);
  void reset() override;
  /// input_ids (B, T); token_type_ids (B, T), 0 for segment A and 1 for B (undefined = all A);
  /// attention_mask (B, T), 1 for real tokens and 0 for padding (undefined = no padding).
  BertOutput forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids = {},
                     const torch::Tensor& attention_mask = {});

  BertOptions options;
  BertEmbeddings embeddings{nullptr};
  BertEncoder encoder{nullptr};
  BertPooler pooler{nullptr};
};
TORCH_MODULE(BertModel);

/// Normal(0, initializer_range) weights, zero biases, unit layer norms (the paper's initialisation).
void bert_init_weights(torch::nn::Module& module, double std);

struct BertPreTrainingOutput {
  torch::Tensor mlm_logits;  // (N, V) at the N positions asked for, or (B, T, V)
  torch::Tensor nsp_logits;  // (B, 2): IsNext, NotNext
};

class BertPredictionHeadTransformImpl : public torch::nn::Cloneable<BertPredictionHeadTransformImpl> {
 public:
  explicit BertPredictionHeadTransformImpl(const BertOptions& o);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x) { return LayerNorm(torch::gelu(dense(x))); }
  torch::nn::Linear dense{nullptr};
  zoo::LayerNorm LayerNorm{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertPredictionHeadTransform);

/// Masked-LM head: dense + GELU + LayerNorm, then the output layer tied to the word embeddings.
class BertLMPredictionHeadImpl : public torch::nn::Cloneable<BertLMPredictionHeadImpl> {
 public:
  BertLMPredictionHeadImpl(const BertOptions& o, torch::nn::Embedding tied);
  void reset() override;
  /// hidden (..., H) -> logits (..., V)
  torch::Tensor forward(const torch::Tensor& hidden);
  BertPredictionHeadTransform transform{nullptr};
  torch::Tensor bias;                     // (V)
  torch::nn::Embedding decoder{nullptr};  // the word embeddings: shared, so not registered a second time
  BertOptions options;
};
TORCH_MODULE(BertLMPredictionHead);

class BertPreTrainingHeadsImpl : public torch::nn::Cloneable<BertPreTrainingHeadsImpl> {
 public:
  BertPreTrainingHeadsImpl(const BertOptions& o, torch::nn::Embedding tied);
  void reset() override;
  BertLMPredictionHead predictions{nullptr};
  torch::nn::Linear seq_relationship{nullptr};
  torch::nn::Embedding tied;  // what predictions' decoder is
  BertOptions options;
};
TORCH_MODULE(BertPreTrainingHeads);

/// BERT with the pretraining heads: masked LM (Sec. 3.1, Task #1) and NSP (Task #2).
class BertForPreTrainingImpl : public torch::nn::Cloneable<BertForPreTrainingImpl> {
 public:
  explicit BertForPreTrainingImpl(const BertOptions& options);
  void reset() override;
  /// A deep copy whose MLM decoder is tied to the copy's own word embeddings.
  std::shared_ptr<torch::nn::Module> clone(const torch::optional<torch::Device>& device = torch::nullopt) const override;
  /// mlm_positions (N, 2) of (row, position) pairs: MLM logits only there (cheaper); undefined = everywhere.
  BertPreTrainingOutput forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                const torch::Tensor& attention_mask, const torch::Tensor& mlm_positions = {});
  BertModel bert{nullptr};
  BertPreTrainingHeads cls{nullptr};
  BertOptions options;
};
TORCH_MODULE(BertForPreTraining);

/// A label per token (POS tagging, NER): dropout + linear on each hidden state.
class BertForTokenClassificationImpl : public torch::nn::Cloneable<BertForTokenClassificationImpl> {
 public:
  BertForTokenClassificationImpl(const BertOptions& options, int64_t num_labels);
  void reset() override;
  /// -> logits (B, T, num_labels)
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids = {},
                        const torch::Tensor& attention_mask = {});
  BertModel bert{nullptr};
  Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
  BertOptions options;
  int64_t num_labels;
};
TORCH_MODULE(BertForTokenClassification);

/// A label per sequence (spam detection, sentiment): dropout + linear on the pooled [CLS] state.
class BertForSequenceClassificationImpl : public torch::nn::Cloneable<BertForSequenceClassificationImpl> {
 public:
  BertForSequenceClassificationImpl(const BertOptions& options, int64_t num_labels);
  void reset() override;
  /// -> logits (B, num_labels)
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids = {},
                        const torch::Tensor& attention_mask = {});
  BertModel bert{nullptr};
  Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};
  BertOptions options;
  int64_t num_labels;
};
TORCH_MODULE(BertForSequenceClassification);

}  // namespace zoo
