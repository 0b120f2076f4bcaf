#include "models/bert.h"

#include <cmath>
#include <stdexcept>

#include "models/common/attention.h"

namespace zoo {
namespace {

zoo::LayerNorm bert_layer_norm(const BertOptions& o) {
  return zoo::LayerNorm(torch::nn::LayerNormOptions({o.hidden_size()}).eps(o.layer_norm_eps()));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

BertOptions BertOptions::preset(const std::string& name, int64_t vocab_size) {
  int64_t layers = 0, hidden = 0;
  if (name == "tiny") layers = 2, hidden = 128;
  else if (name == "mini") layers = 4, hidden = 256;
  else if (name == "small") layers = 4, hidden = 512;
  else if (name == "medium") layers = 8, hidden = 512;
  else if (name == "base") layers = 12, hidden = 768;
  else throw std::invalid_argument("unknown BERT size '" + name + "' (tiny, mini, small, medium, base)");
  return BertOptions(vocab_size).num_layers(layers).hidden_size(hidden).num_heads(hidden / 64).intermediate_size(4 * hidden);
}

void bert_init_weights(torch::nn::Module& module, double std) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    if (ends_with(name, "LayerNorm.weight")) t.fill_(1.0);
    else if (ends_with(name, "bias")) t.zero_();
    else t.normal_(0.0, std);
  }
}

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertOptions& o) : options(o) { reset(); }

void BertEmbeddingsImpl::reset() {
  const auto& o = options;
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(o.vocab_size(), o.hidden_size()));
  position_embeddings = register_module("position_embeddings", torch::nn::Embedding(o.max_position(), o.hidden_size()));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(o.type_vocab_size(), o.hidden_size()));
  LayerNorm = register_module("LayerNorm", bert_layer_norm(o));
  dropout = register_module("dropout", Dropout(o.dropout()));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids) {
  const auto t = input_ids.size(1);
  TORCH_CHECK(t <= position_embeddings->weight.size(0), "BERT: sequence of ", t, " tokens is longer than max_position ",
              position_embeddings->weight.size(0));
  auto positions = torch::arange(t, input_ids.options().dtype(torch::kLong));
  auto x = word_embeddings(input_ids) + position_embeddings(positions).unsqueeze(0) + token_type_embeddings(token_type_ids);
  return dropout(LayerNorm(x));
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const BertOptions& o) : options(o) { reset(); }

void BertSelfAttentionImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_heads() > 0, "BERT: num_heads must be positive, got ", o.num_heads());
  TORCH_CHECK(o.hidden_size() % o.num_heads() == 0, "BERT: num_heads ", o.num_heads(), " does not divide hidden_size ",
              o.hidden_size());
  query = register_module("query", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
  key = register_module("key", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
  value = register_module("value", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
}

torch::Tensor BertSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const auto b = x.size(0), t = x.size(1), h = x.size(2);
  const auto heads = options.num_heads();
  auto split = [&](const torch::Tensor& y) { return y.view({b, t, heads, h / heads}).transpose(1, 2); };  // (B, A, T, H/A)
  auto ctx = scaled_dot_product_attention(split(query(x)), split(key(x)), split(value(x)), mask,
                                          is_training() ? options.attention_dropout() : 0.0);
  return ctx.transpose(1, 2).reshape({b, t, h});
}

BertResidualImpl::BertResidualImpl(int64_t in, const BertOptions& o) : in_features(in), options(o) { reset(); }

void BertResidualImpl::reset() {
  const auto& o = options;
  dense = register_module("dense", torch::nn::Linear(in_features, o.hidden_size()));
  LayerNorm = register_module("LayerNorm", bert_layer_norm(o));
  dropout = register_module("dropout", Dropout(o.dropout()));
}

torch::Tensor BertResidualImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  return LayerNorm(dropout(dense(x)) + residual);
}

BertAttentionImpl::BertAttentionImpl(const BertOptions& o) : options(o) { reset(); }

void BertAttentionImpl::reset() {
  const auto& o = options;
  self = register_module("self", BertSelfAttention(o));
  output = register_module("output", BertResidual(o.hidden_size(), o));
}

torch::Tensor BertAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  return output(self(x, mask), x);
}

BertIntermediateImpl::BertIntermediateImpl(const BertOptions& o) : options(o) { reset(); }

void BertIntermediateImpl::reset() {
  const auto& o = options;
  dense = register_module("dense", torch::nn::Linear(o.hidden_size(), o.intermediate_size()));
}

BertLayerImpl::BertLayerImpl(const BertOptions& o) : options(o) { reset(); }

void BertLayerImpl::reset() {
  const auto& o = options;
  attention = register_module("attention", BertAttention(o));
  intermediate = register_module("intermediate", BertIntermediate(o));
  output = register_module("output", BertResidual(o.intermediate_size(), o));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto a = attention(x, mask);
  return output(intermediate(a), a);
}

BertEncoderImpl::BertEncoderImpl(const BertOptions& o) : options(o) { reset(); }

void BertEncoderImpl::reset() {
  const auto& o = options;
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers(); ++i) layer->push_back(BertLayer(o));
}

torch::Tensor BertEncoderImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  for (auto& l : *layer) x = l->as<BertLayer>()->forward(x, mask);
  return x;
}

BertPoolerImpl::BertPoolerImpl(const BertOptions& o) : options(o) { reset(); }

void BertPoolerImpl::reset() {
  const auto& o = options;
  dense = register_module("dense", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
}

BertModelImpl::BertModelImpl(const BertOptions& options_) : options(options_) { reset(); }

void BertModelImpl::reset() {
  embeddings = register_module("embeddings", BertEmbeddings(options));
  encoder = register_module("encoder", BertEncoder(options));
  pooler = register_module("pooler", BertPooler(options));
  bert_init_weights(*this, options.initializer_range());
}

BertOutput BertModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                  const torch::Tensor& attention_mask) {
  auto types = token_type_ids.defined() ? token_type_ids : torch::zeros_like(input_ids);
  torch::Tensor mask;  // additive (B, 1, 1, T): -inf on padding keys
  if (attention_mask.defined()) mask = padding_mask(attention_mask.eq(0));
  auto sequence = encoder(embeddings(input_ids, types), mask);
  return {sequence, pooler(sequence)};
}

BertPredictionHeadTransformImpl::BertPredictionHeadTransformImpl(const BertOptions& o) : options(o) { reset(); }

void BertPredictionHeadTransformImpl::reset() {
  const auto& o = options;
  dense = register_module("dense", torch::nn::Linear(o.hidden_size(), o.hidden_size()));
  LayerNorm = register_module("LayerNorm", bert_layer_norm(o));
}

BertLMPredictionHeadImpl::BertLMPredictionHeadImpl(const BertOptions& o, torch::nn::Embedding tied)
    : decoder(std::move(tied)), options(o) {
  reset();
}

void BertLMPredictionHeadImpl::reset() {
  const auto& o = options;
  transform = register_module("transform", BertPredictionHeadTransform(o));
  bias = register_parameter("bias", torch::zeros({o.vocab_size()}));
}

torch::Tensor BertLMPredictionHeadImpl::forward(const torch::Tensor& hidden) {
  return torch::nn::functional::linear(transform(hidden), decoder->weight, bias);
}

BertPreTrainingHeadsImpl::BertPreTrainingHeadsImpl(const BertOptions& o, torch::nn::Embedding tied_)
    : tied(std::move(tied_)), options(o) {
  reset();
}

void BertPreTrainingHeadsImpl::reset() {
  const auto& o = options;
  predictions = register_module("predictions", BertLMPredictionHead(o, tied));
  seq_relationship = register_module("seq_relationship", torch::nn::Linear(o.hidden_size(), 2));
}

BertForPreTrainingImpl::BertForPreTrainingImpl(const BertOptions& options_) : options(options_) { reset(); }

void BertForPreTrainingImpl::reset() {
  bert = register_module("bert", BertModel(options));
  cls = register_module("cls", BertPreTrainingHeads(options, bert->embeddings->word_embeddings));
  bert_init_weights(*cls, options.initializer_range());
}

std::shared_ptr<torch::nn::Module> BertForPreTrainingImpl::clone(const torch::optional<torch::Device>& device) const {
  // Cloneable copies the heads as cloned on their own: tied to this model's word embeddings.
  auto copy = std::dynamic_pointer_cast<BertForPreTrainingImpl>(Cloneable::clone(device));
  copy->cls->tied = copy->bert->embeddings->word_embeddings;
  copy->cls->predictions->decoder = copy->bert->embeddings->word_embeddings;
  return copy;
}

BertPreTrainingOutput BertForPreTrainingImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                                      const torch::Tensor& attention_mask,
                                                      const torch::Tensor& mlm_positions) {
  auto out = bert(input_ids, token_type_ids, attention_mask);
  auto hidden = out.sequence;
  if (mlm_positions.defined()) hidden = hidden.index({mlm_positions.select(1, 0), mlm_positions.select(1, 1)});  // (N, H)
  return {cls->predictions(hidden), cls->seq_relationship(out.pooled)};
}

BertForTokenClassificationImpl::BertForTokenClassificationImpl(const BertOptions& options_, int64_t num_labels_)
    : options(options_), num_labels(num_labels_) {
  reset();
}

void BertForTokenClassificationImpl::reset() {
  bert = register_module("bert", BertModel(options));
  dropout = register_module("dropout", Dropout(options.dropout()));
  classifier = register_module("classifier", torch::nn::Linear(options.hidden_size(), num_labels));
  bert_init_weights(*classifier, options.initializer_range());
}

torch::Tensor BertForTokenClassificationImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                                      const torch::Tensor& attention_mask) {
  return classifier(dropout(bert(input_ids, token_type_ids, attention_mask).sequence));
}

BertForSequenceClassificationImpl::BertForSequenceClassificationImpl(const BertOptions& options_, int64_t num_labels_)
    : options(options_), num_labels(num_labels_) {
  reset();
}

void BertForSequenceClassificationImpl::reset() {
  bert = register_module("bert", BertModel(options));
  dropout = register_module("dropout", Dropout(options.dropout()));
  classifier = register_module("classifier", torch::nn::Linear(options.hidden_size(), num_labels));
  bert_init_weights(*classifier, options.initializer_range());
}

torch::Tensor BertForSequenceClassificationImpl::forward(const torch::Tensor& input_ids,
                                                         const torch::Tensor& token_type_ids,
                                                         const torch::Tensor& attention_mask) {
  return classifier(dropout(bert(input_ids, token_type_ids, attention_mask).pooled));
}

}  // namespace zoo
