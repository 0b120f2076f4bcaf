#include "models/transformer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "models/common/eval_mode.h"

namespace zoo {
namespace {

zoo::LayerNorm layer_norm(int64_t d) { return zoo::LayerNorm(torch::nn::LayerNormOptions({d})); }

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
  dropout = register_module("dropout", Dropout(options.dropout()));
}

torch::Tensor TransformerEncoderLayerImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  auto ff = [&](const torch::Tensor& h) { return ff_2(dropout(torch::relu(ff_1(h)))); };  // Eq. 2 (+ dropout: options.dropout)
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
  dropout = register_module("dropout", Dropout(options.dropout()));
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
  TORCH_CHECK(options.heads() > 0, "Transformer: heads must be positive, got ", options.heads());
  TORCH_CHECK(options.d_model() % options.heads() == 0, "Transformer: heads ", options.heads(),
              " does not divide d_model ", options.d_model());
  TORCH_CHECK(options.d_model() % 2 == 0, "Transformer: d_model must be even for sinusoidal positions");
  const auto d = options.d_model();
  src_embedding = register_module("src_embedding", torch::nn::Embedding(options.src_vocab(), d));
  tgt_embedding = register_module("tgt_embedding", torch::nn::Embedding(options.tgt_vocab(), d));
  positions = register_buffer("positions", sinusoidal_positions(options.max_len(), d));
  dropout = register_module("dropout", Dropout(options.dropout()));
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
double length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

std::vector<Hypothesis> generate(TransformerImpl& model, const torch::Tensor& src, const DecodeOptions& o) {
  std::vector<Hypothesis> out;
  for (auto& f : generate_nbest(model, src, o)) out.push_back(std::move(f.front()));
  return out;
}

std::vector<std::vector<Hypothesis>> generate_nbest(TransformerImpl& model, const torch::Tensor& src,
                                                    const DecodeOptions& o) {
  torch::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);  // dropout off while decoding; the caller's mode back afterwards
  const int64_t b = src.size(0), k = o.beam_size(), v = model.options.tgt_vocab();
  TORCH_CHECK(o.max_len() < model.options.max_len(), "generate: max_len ", o.max_len(),
              " must be below the model's max_len ", model.options.max_len());
  TORCH_CHECK(o.nbest() >= 1 && o.nbest() <= k, "generate: nbest must be 1 to beam_size (", k, "), got ", o.nbest());
  // At or above 0 (and finite): the search stops on a bound, the best live score over the penalty at
  // max_len, that no longer bounds a live hypothesis' final score below 0.
  TORCH_CHECK(o.length_penalty() >= 0 && std::isfinite(o.length_penalty()),
              "generate: length_penalty must be 0 or above, got ", o.length_penalty());
  const auto dev = src.device();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto lp = [&](int64_t length) { return length_penalty(length, o.length_penalty()); };

  // Row r * k + j holds live hypothesis j of source r. A hypothesis that emits EOS among the k
  // best candidates leaves the beam for its source's finished list, scored log p / lp(|Y|) (Wu
  // et al. 2016), and the beam is refilled from the next best candidates; so k hypotheses stay
  // live until the source is done.
  auto src_k = src.repeat_interleave(k, /*dim=*/0);
  auto memory = model.encode(src).repeat_interleave(k, /*dim=*/0);  // (B*K, S, D)
  auto tokens = torch::full({b * k, 1}, o.bos_id(), torch::TensorOptions().dtype(torch::kLong).device(dev));
  std::vector<double> live(static_cast<size_t>(b * k), neg_inf);  // log p of each live row
  for (int64_t r = 0; r < b; ++r) live[static_cast<size_t>(r * k)] = 0.0;  // one live hypothesis at the start
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(b));
  std::vector<bool> done(static_cast<size_t>(b), false);
  auto cache = model.make_cache();
  // Never generated: padding, the start token and the caller's banned ones.
  auto banned = torch::zeros({v}, torch::TensorOptions().dtype(torch::kDouble).device(dev));
  banned[model.options.pad_id()] = neg_inf;
  banned[o.bos_id()] = neg_inf;
  for (auto id : o.banned_ids()) {
    TORCH_CHECK(id >= 0 && id < v && id != o.eos_id(), "generate: banned id ", id,
                " must be a token of the output vocabulary (0 to ", v - 1, ") other than EOS (", o.eos_id(), ")");
    banned[id] = neg_inf;
  }

  auto tokens_of = [&](const torch::Tensor& row_tokens, int64_t last) {
    std::vector<int64_t> out(row_tokens.data_ptr<int64_t>() + 1, row_tokens.data_ptr<int64_t>() + row_tokens.size(0));
    if (last >= 0) out.push_back(last);
    return out;
  };

  for (int64_t step = 1; step <= o.max_len(); ++step) {
    auto logits = o.use_cache() ? model.decode(tokens.slice(1, step - 1, step), memory, src_k, &cache)
                                : model.decode(tokens, memory, src_k);
    auto logp = torch::log_softmax(logits.select(1, -1).to(torch::kDouble), /*dim=*/-1) + banned;  // (B*K, V)
    auto base = torch::tensor(live, torch::TensorOptions().dtype(torch::kDouble)).to(dev).view({b * k, 1});
    auto top = (base + logp).view({b, k * v}).topk(std::min(2 * k, k * v), /*dim=*/1);  // 2k: enough after EOS leave
    auto top_scores = std::get<0>(top).cpu().contiguous(), top_index = std::get<1>(top).cpu().contiguous();
    auto tokens_cpu = tokens.cpu();
    const auto sa = top_scores.accessor<double, 2>();
    const auto ia = top_index.accessor<int64_t, 2>();
    std::vector<int64_t> rows(static_cast<size_t>(b * k)), next(static_cast<size_t>(b * k), o.eos_id());
    std::vector<double> next_live(static_cast<size_t>(b * k), neg_inf);
    for (int64_t r = 0; r < b; ++r) {
      int64_t filled = 0;
      for (int64_t c = 0; c < top_scores.size(1) && !done[static_cast<size_t>(r)] && filled < k; ++c) {
        const double score = sa[r][c];
        if (score == neg_inf) break;
        const int64_t origin = r * k + ia[r][c] / v, token = ia[r][c] % v;
        if (token == o.eos_id() || step == o.max_len()) {  // finished (at max_len, with or without EOS)
          // Only among the k best candidates, as in fairseq and Hugging Face: an ending ranked below
          // k is dropped, not finished, for else improbable endings of unfinished words would fill
          // the k finished that end the search while its best hypotheses are still live.
          if (c >= k) continue;
          auto seq = tokens_of(tokens_cpu[origin], token == o.eos_id() ? -1 : token);
          finished[static_cast<size_t>(r)].push_back({seq, score, score / lp(step), step});
        } else {
          rows[static_cast<size_t>(r * k + filled)] = origin;
          next[static_cast<size_t>(r * k + filled)] = token;
          next_live[static_cast<size_t>(r * k + filled)] = score;
          ++filled;
        }
      }
      for (int64_t j = filled; j < k; ++j) rows[static_cast<size_t>(r * k + j)] = r * k;  // dead rows: any origin
      // Done when k hypotheses have finished, or no live one can still beat the nbest-th best
      // finished one (log p only falls and lp is largest at max_len).
      auto& f = finished[static_cast<size_t>(r)];
      const auto n_finished = static_cast<int64_t>(f.size());
      if (!done[static_cast<size_t>(r)] && n_finished > 0) {
        if (n_finished >= k || filled == 0) {
          done[static_cast<size_t>(r)] = true;
        } else if (n_finished >= o.nbest()) {
          std::vector<double> scores;
          for (const auto& h : f) scores.push_back(h.score);
          std::nth_element(scores.begin(), scores.begin() + (o.nbest() - 1), scores.end(), std::greater<double>());
          const double bound = next_live[static_cast<size_t>(r * k)] / lp(o.max_len());
          if (bound <= scores[static_cast<size_t>(o.nbest() - 1)]) done[static_cast<size_t>(r)] = true;
        }
      }
      if (done[static_cast<size_t>(r)])
        for (int64_t j = 0; j < k; ++j) next_live[static_cast<size_t>(r * k + j)] = neg_inf;
    }
    live = std::move(next_live);
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    auto index = torch::tensor(rows, torch::kLong).to(dev);
    tokens = torch::cat({tokens.index_select(0, index), torch::tensor(next, torch::kLong).to(dev).view({b * k, 1})}, 1);
    // The K rows of a source share one encoder output, so only the self-attention cache moves.
    if (o.use_cache())
      for (auto& c : cache.self) c.reorder(index);
  }

  for (int64_t r = 0; r < b; ++r) {
    auto& f = finished[static_cast<size_t>(r)];
    TORCH_CHECK(!f.empty(), "generate: no hypothesis finished for source ", r);
    // Best first; of equal scores, the one that finished first. NaN (a diverged model) goes last.
    std::stable_sort(f.begin(), f.end(), [](const Hypothesis& a, const Hypothesis& c) {
      return a.score > c.score || (!std::isnan(a.score) && std::isnan(c.score));
    });
  }
  return finished;
}

size_t best_merged(const std::vector<Hypothesis>& nbest, const std::vector<std::string>& keys, double alpha) {
  return ranked_merged(nbest, keys, alpha).front();
}

std::vector<size_t> ranked_merged(const std::vector<Hypothesis>& nbest, const std::vector<std::string>& keys,
                                  double alpha) {
  TORCH_CHECK(!nbest.empty() && nbest.size() == keys.size(), "ranked_merged: ", nbest.size(), " hypotheses and ",
              keys.size(), " keys");
  std::vector<std::pair<double, size_t>> ranked;  // (merged score, first index) of each key
  std::vector<bool> seen(nbest.size(), false);
  for (size_t i = 0; i < nbest.size(); ++i) {
    if (seen[i]) continue;
    // log sum exp of the log p of hypothesis i and of the later ones sharing its key, factored
    // around the largest so that no term overflows.
    std::vector<double> members;
    for (size_t j = i; j < nbest.size(); ++j)
      if (!seen[j] && keys[j] == keys[i]) seen[j] = true, members.push_back(nbest[j].log_prob);
    const double top = *std::max_element(members.begin(), members.end());
    double sum = 0;
    for (double m : members) sum += std::exp(m - top);
    ranked.emplace_back((top + std::log(sum)) / length_penalty(nbest[i].length, alpha), i);
  }
  // Best first; a NaN score (a NaN log p) last, as generate_nbest orders them.
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (!std::isnan(a.first) && std::isnan(b.first));
  });
  std::vector<size_t> out;
  for (const auto& r : ranked) out.push_back(r.second);
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
