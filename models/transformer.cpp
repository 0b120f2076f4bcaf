#include "models/transformer.h"

#include <cmath>
#include <limits>

namespace zoo {
namespace {

torch::nn::LayerNorm layer_norm(int64_t d) { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})); }

/// Additive mask (T, P + T) for T new positions after P cached ones: new position i sees keys <= P + i.
torch::Tensor causal_mask_after(int64_t t, int64_t past, const torch::TensorOptions& options) {
  return torch::full({t, past + t}, -std::numeric_limits<float>::infinity(), options).triu(/*diagonal=*/past + 1);
}

}  // namespace

torch::Tensor sinusoidal_positions(int64_t max_len, int64_t d) {
  auto pos = torch::arange(max_len, torch::kFloat).unsqueeze(1);                      // (L, 1)
  auto i2 = torch::arange(0, d, 2, torch::kFloat);                                     // 2i
  auto angle = pos * torch::exp(i2 * (-std::log(10000.0) / static_cast<double>(d)));  // pos / 10000^(2i/d)
  auto pe = torch::zeros({max_len, d});
  pe.slice(1, 0, d, 2).copy_(torch::sin(angle));
  pe.slice(1, 1, d, 2).copy_(torch::cos(angle.slice(1, 0, d / 2)));
  return pe;
}

void DecoderCache::reorder(const torch::Tensor& index) {
  for (auto& c : self) c.reorder(index);
  for (auto& c : cross) c.reorder(index);
}

// ---------------------------------------------------------------- encoder layer
TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(const TransformerOptions& options_) : options(options_) {
  reset();
}

void TransformerEncoderLayerImpl::reset() {
  const auto d = options.d_model();
  self_attention = register_module(
      "self_attention",
      MultiheadAttention(MultiheadAttentionOptions(d, options.heads()).dropout(options.attention_dropout())));
  ff_1 = register_module("ff_1", torch::nn::Linear(d, options.ff_dim()));
  ff_2 = register_module("ff_2", torch::nn::Linear(options.ff_dim(), d));
  norm_1 = register_module("norm_1", layer_norm(d));
  norm_2 = register_module("norm_2", layer_norm(d));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
}

torch::Tensor TransformerEncoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  auto ff = [&](const torch::Tensor& h) { return ff_2(dropout(torch::relu(ff_1(h)))); };  // Eq. 2
  if (options.pre_norm()) {
    x = x + dropout(self_attention(norm_1(x), mask));
    return x + dropout(ff(norm_2(x)));
  }
  x = norm_1(x + dropout(self_attention(x, mask)));  // LayerNorm(x + Sublayer(x)), Sec. 3.1
  return norm_2(x + dropout(ff(x)));
}

// ---------------------------------------------------------------- decoder layer
TransformerDecoderLayerImpl::TransformerDecoderLayerImpl(const TransformerOptions& options_) : options(options_) {
  reset();
}

void TransformerDecoderLayerImpl::reset() {
  const auto d = options.d_model();
  auto attention = [&] {
    return MultiheadAttention(MultiheadAttentionOptions(d, options.heads()).dropout(options.attention_dropout()));
  };
  self_attention = register_module("self_attention", attention());
  cross_attention = register_module("cross_attention", attention());
  ff_1 = register_module("ff_1", torch::nn::Linear(d, options.ff_dim()));
  ff_2 = register_module("ff_2", torch::nn::Linear(options.ff_dim(), d));
  norm_1 = register_module("norm_1", layer_norm(d));
  norm_2 = register_module("norm_2", layer_norm(d));
  norm_3 = register_module("norm_3", layer_norm(d));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
}

torch::Tensor TransformerDecoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& memory,
                                                   const torch::Tensor& self_mask, const torch::Tensor& memory_mask,
                                                   KVCache* self_cache, KVCache* cross_cache) {
  auto ff = [&](const torch::Tensor& h) { return ff_2(dropout(torch::relu(ff_1(h)))); };
  if (options.pre_norm()) {
    x = x + dropout(self_attention(norm_1(x), self_mask, self_cache));
    x = x + dropout(cross_attention->forward_cross(norm_2(x), memory, memory_mask, cross_cache));
    return x + dropout(ff(norm_3(x)));
  }
  x = norm_1(x + dropout(self_attention(x, self_mask, self_cache)));
  x = norm_2(x + dropout(cross_attention->forward_cross(x, memory, memory_mask, cross_cache)));
  return norm_3(x + dropout(ff(x)));
}

// ---------------------------------------------------------------- transformer
TransformerImpl::TransformerImpl(const TransformerOptions& options_) : options(options_) { reset(); }

void TransformerImpl::reset() {
  TORCH_CHECK(options.d_model() % options.heads() == 0, "Transformer: heads ", options.heads(),
              " does not divide d_model ", options.d_model());
  TORCH_CHECK(options.d_model() % 2 == 0, "Transformer: d_model must be even for sinusoidal positions");
  const auto d = options.d_model();
  src_embedding = register_module("src_embedding", torch::nn::Embedding(options.src_vocab(), d));
  tgt_embedding = register_module("tgt_embedding", torch::nn::Embedding(options.tgt_vocab(), d));
  positions = register_buffer("positions", sinusoidal_positions(options.max_len(), d));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout()));
  encoder = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.encoder_layers(); ++i) encoder->push_back(TransformerEncoderLayer(options));
  decoder = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < options.decoder_layers(); ++i) decoder->push_back(TransformerDecoderLayer(options));
  if (options.pre_norm()) {
    encoder_norm = register_module("encoder_norm", layer_norm(d));
    decoder_norm = register_module("decoder_norm", layer_norm(d));
  }
  if (options.tie_embeddings()) {
    output_bias = register_parameter("output_bias", torch::zeros({options.tgt_vocab()}));
  } else {
    output = register_module("output", torch::nn::Linear(d, options.tgt_vocab()));
  }

  // Embeddings N(0, d^-1/2): after the sqrt(d) scale they have unit variance, and as the tied
  // output projection they give logits of unit scale. Xavier-uniform for every other matrix.
  torch::NoGradGuard no_grad;
  for (auto* e : {&src_embedding, &tgt_embedding}) (*e)->weight.normal_(0.0, std::pow(static_cast<double>(d), -0.5));
  for (auto& p : named_parameters()) {
    const auto& name = p.key();
    if (p.value().dim() == 2 && name.find("embedding") == std::string::npos) torch::nn::init::xavier_uniform_(p.value());
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) p.value().zero_();
  }
}

torch::Tensor TransformerImpl::embed(torch::nn::Embedding& table, const torch::Tensor& ids, int64_t offset) {
  const auto t = ids.size(1);
  TORCH_CHECK(offset + t <= options.max_len(), "Transformer: sequence of ", offset + t,
              " tokens is longer than max_len ", options.max_len());
  auto x = table(ids) * std::sqrt(static_cast<double>(options.d_model()));  // Sec. 3.4
  return dropout(x + positions.slice(0, offset, offset + t));              // Sec. 3.5
}

torch::Tensor TransformerImpl::encode(const torch::Tensor& src) {
  auto mask = padding_mask(src.eq(options.pad_id()));  // (B, 1, 1, S)
  auto x = embed(src_embedding, src, 0);               // (B, S, D)
  for (auto& layer : *encoder) x = layer->as<TransformerEncoderLayer>()->forward(x, mask);
  return options.pre_norm() ? encoder_norm(x) : x;
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& src,
                                      DecoderCache* cache) {
  const int64_t past = cache ? cache->length() : 0, t = tgt.size(1);
  auto memory_mask = padding_mask(src.eq(options.pad_id()));
  // One new position after cached ones may see them all: no mask needed.
  torch::Tensor self_mask;
  if (t > 1) self_mask = causal_mask_after(t, past, torch::TensorOptions().device(tgt.device()));
  auto x = embed(tgt_embedding, tgt, past);  // (B, T, D)
  for (size_t i = 0; i < decoder->size(); ++i) {
    x = decoder[i]->as<TransformerDecoderLayer>()->forward(x, memory, self_mask, memory_mask,
                                                           cache ? &cache->self[i] : nullptr,
                                                           cache ? &cache->cross[i] : nullptr);
  }
  if (options.pre_norm()) x = decoder_norm(x);
  if (options.tie_embeddings()) return torch::nn::functional::linear(x, tgt_embedding->weight, output_bias);
  return output(x);  // (B, T, V)
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src, const torch::Tensor& tgt) {
  return decode(tgt, encode(src), src);
}

DecoderCache TransformerImpl::make_cache() const {
  DecoderCache c;
  c.self.resize(decoder->size());
  c.cross.resize(decoder->size());
  return c;
}

// ---------------------------------------------------------------- decoding
std::vector<Hypothesis> generate(TransformerImpl& model, const torch::Tensor& src, const DecodeOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t b = src.size(0), k = o.beam_size(), v = model.options.tgt_vocab();
  const auto dev = src.device();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  // Every source row is repeated k times: row r * k + j is hypothesis j of source r.
  auto src_k = src.repeat_interleave(k, /*dim=*/0);
  auto memory = model.encode(src).repeat_interleave(k, /*dim=*/0);  // (B*K, S, D)
  auto tokens = torch::full({b * k, 1}, o.bos_id(), torch::TensorOptions().dtype(torch::kLong).device(dev));
  // Only hypothesis 0 of each source is live at the start, so the first step picks k distinct tokens.
  auto scores = torch::full({b, k}, neg_inf, torch::TensorOptions().dtype(torch::kDouble).device(dev));
  scores.select(1, 0).zero_();
  auto finished = torch::zeros({b * k}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  auto lengths = torch::zeros({b * k}, torch::TensorOptions().dtype(torch::kLong).device(dev));
  auto cache = model.make_cache();
  auto base = torch::arange(b, torch::TensorOptions().dtype(torch::kLong).device(dev)).unsqueeze(1) * k;  // (B, 1)

  for (int64_t step = 0; step < o.max_len(); ++step) {
    auto logits = o.use_cache() ? model.decode(tokens.slice(1, step, step + 1), memory, src_k, &cache)
                                : model.decode(tokens, memory, src_k);
    auto logp = torch::log_softmax(logits.select(1, -1).to(torch::kDouble), /*dim=*/-1);  // (B*K, V)
    // A finished hypothesis stays as it is: it may only be extended by EOS, at no cost.
    auto stay = torch::full({v}, neg_inf, logp.options());
    stay[o.eos_id()] = 0.0;
    logp = torch::where(finished.unsqueeze(1), stay.unsqueeze(0), logp);
    auto cand = (scores.view({b * k, 1}) + logp).view({b, k * v});
    auto top = cand.topk(k, /*dim=*/1);
    scores = std::get<0>(top);
    auto idx = std::get<1>(top);
    auto rows = (base + idx.div(v, /*rounding_mode=*/"floor")).view({b * k});  // origin hypothesis
    auto next = idx.remainder(v).view({b * k, 1});
    tokens = torch::cat({tokens.index_select(0, rows), next}, /*dim=*/1);
    if (o.use_cache()) cache.reorder(rows);
    auto was_finished = finished.index_select(0, rows);
    lengths = lengths.index_select(0, rows) + (~was_finished).to(torch::kLong);
    finished = was_finished | next.view({b * k}).eq(o.eos_id());
    if (finished.all().item<bool>()) break;
  }

  // GNMT length penalty lp(Y) = ((5 + |Y|) / 6)^alpha; the best normalised score wins.
  auto lp = torch::pow((5.0 + lengths.to(torch::kDouble)) / 6.0, o.length_penalty()).view({b, k});
  auto normalised = scores / lp;
  auto best = normalised.argmax(/*dim=*/1);  // (B)
  auto tokens_cpu = tokens.cpu();
  auto best_cpu = best.cpu(), scores_cpu = scores.cpu(), norm_cpu = normalised.cpu();
  std::vector<Hypothesis> out(static_cast<size_t>(b));
  for (int64_t r = 0; r < b; ++r) {
    const auto j = best_cpu[r].item<int64_t>();
    auto row = tokens_cpu[r * k + j];
    auto& h = out[static_cast<size_t>(r)];
    for (int64_t i = 1; i < row.size(0); ++i) {
      const auto tok = row[i].item<int64_t>();
      if (tok == o.eos_id()) break;
      h.tokens.push_back(tok);
    }
    h.log_prob = scores_cpu[r][j].item<double>();
    h.score = norm_cpu[r][j].item<double>();
  }
  return out;
}

torch::Tensor label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, double eps,
                                           int64_t ignore_index) {
  auto logp = torch::log_softmax(logits.to(torch::kFloat), /*dim=*/-1);  // (N, V)
  auto keep = target.ne(ignore_index);
  auto safe = target.masked_fill(~keep, 0);
  auto nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1);  // -log p(y)
  auto uniform = -logp.mean(/*dim=*/-1);                      // -(1/V) sum_v log p(v)
  auto loss = (1.0 - eps) * nll + eps * uniform;
  auto n = keep.sum().clamp_min(1);
  return (loss * keep.to(loss.scalar_type())).sum() / n;
}

}  // namespace zoo
