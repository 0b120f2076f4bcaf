// Transformer: Vaswani et al. 2017, "Attention Is All You Need".
// Encoder-decoder with token embeddings scaled by sqrt(d_model) and sinusoidal positions
// (Sec. 3.4-3.5), multi-head attention with key-padding and causal masks (Sec. 3.2.3),
// position-wise feed-forward layers (Sec. 3.3), residual + layer norm (post-norm as in the
// paper, pre-norm as an option), optionally tied target embedding and output projection.
// Decoding: greedy and beam search, incremental with a key/value cache or without one.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "models/common/attention.h"
#include "models/common/dropout.h"
#include "models/common/norm.h"

namespace zoo {

struct TransformerOptions {
  TransformerOptions(int64_t src_vocab, int64_t tgt_vocab) : src_vocab_(src_vocab), tgt_vocab_(tgt_vocab) {}
  /// Source vocabulary size (token ids in [0, src_vocab)).
  TORCH_ARG(int64_t, src_vocab);
  /// Target vocabulary size; the decoder's output has one logit per target token.
  TORCH_ARG(int64_t, tgt_vocab);
  /// Model width d_model.
  TORCH_ARG(int64_t, d_model) = 512;
  /// Attention heads h; must divide d_model.
  TORCH_ARG(int64_t, heads) = 8;
  /// Inner width d_ff of the position-wise feed-forward layers.
  TORCH_ARG(int64_t, ff_dim) = 2048;
  /// Encoder layers N.
  TORCH_ARG(int64_t, encoder_layers) = 6;
  /// Decoder layers N.
  TORCH_ARG(int64_t, decoder_layers) = 6;
  /// Residual dropout P_drop: on each sub-layer's output and on embeddings + positions (Sec. 5.4),
  /// and on the feed-forward layers' hidden activations, which the paper does not name
  /// (torch.nn.Transformer does the same; tensor2tensor calls it relu_dropout).
  TORCH_ARG(double, dropout) = 0.1;
  /// Dropout on the attention probabilities (not in the paper; 0 by default).
  TORCH_ARG(double, attention_dropout) = 0.0;
  /// Longest sequence the sinusoidal position table covers.
  TORCH_ARG(int64_t, max_len) = 256;
  /// x + Sublayer(LN(x)) with a final layer norm, instead of the paper's LN(x + Sublayer(x)).
  TORCH_ARG(bool, pre_norm) = false;
  /// Share the target embedding matrix with the pre-softmax projection (Sec. 3.4).
  TORCH_ARG(bool, tie_embeddings) = true;
  /// The padding token of both vocabularies: masked as a key, never predicted by the loss.
  TORCH_ARG(int64_t, pad_id) = 0;
};

/// PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)): (max_len, d).
torch::Tensor sinusoidal_positions(int64_t max_len, int64_t d);

/// What incremental decoding keeps between steps: per decoder layer, the keys and values of
/// the tokens decoded so far (self-attention) and of the encoder output (cross-attention).
struct DecoderCache {
  std::vector<KVCache> self, cross;
  /// Tokens decoded so far.
  int64_t length() const { return self.empty() ? 0 : self.front().length(); }
  /// Keeps batch rows `index` in that order (beam search).
  void reorder(const torch::Tensor& index);
};

/// One encoder layer: self-attention, then feed-forward, each with residual + layer norm.
class TransformerEncoderLayerImpl : public torch::nn::Cloneable<TransformerEncoderLayerImpl> {
 public:
  explicit TransformerEncoderLayerImpl(const TransformerOptions& options);
  void reset() override;
  /// x (B, S, D), mask additive (B, 1, 1, S) -> (B, S, D).
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask);

  TransformerOptions options;
  MultiheadAttention self_attention{nullptr};
  torch::nn::Linear ff_1{nullptr}, ff_2{nullptr};
  zoo::LayerNorm norm_1{nullptr}, norm_2{nullptr};
  Dropout dropout{nullptr};
};
TORCH_MODULE(TransformerEncoderLayer);

/// One decoder layer: masked self-attention, cross-attention over the encoder output, feed-forward.
class TransformerDecoderLayerImpl : public torch::nn::Cloneable<TransformerDecoderLayerImpl> {
 public:
  explicit TransformerDecoderLayerImpl(const TransformerOptions& options);
  void reset() override;
  /// x (B, T, D) over memory (B, S, D) -> (B, T, D). self_mask (T, T') is the causal mask,
  /// memory_mask (B, 1, 1, S) the source padding. With caches, x holds only the new positions.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& memory, const torch::Tensor& self_mask,
                        const torch::Tensor& memory_mask, KVCache* self_cache = nullptr,
                        KVCache* cross_cache = nullptr);

  TransformerOptions options;
  MultiheadAttention self_attention{nullptr}, cross_attention{nullptr};
  torch::nn::Linear ff_1{nullptr}, ff_2{nullptr};
  zoo::LayerNorm norm_1{nullptr}, norm_2{nullptr}, norm_3{nullptr};
  Dropout dropout{nullptr};
};
TORCH_MODULE(TransformerDecoderLayer);

class TransformerImpl : public torch::nn::Cloneable<TransformerImpl> {
 public:
  explicit TransformerImpl(const TransformerOptions& options);
  void reset() override;

  /// src (B, S) token ids -> memory (B, S, D). Positions holding pad_id are masked as keys.
  torch::Tensor encode(const torch::Tensor& src);
  /// tgt (B, T) token ids -> logits (B, T, tgt_vocab). Position t sees tgt[:, :t+1] and all
  /// non-padding source positions. With a cache, tgt holds the tokens after those already
  /// decoded (usually one) and the cache grows by T.
  torch::Tensor decode(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& src,
                       DecoderCache* cache = nullptr);
  /// Teacher forcing: src (B, S), tgt (B, T) -> logits (B, T, tgt_vocab).
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt);
  /// An empty cache with one slot per decoder layer.
  DecoderCache make_cache() const;

  TransformerOptions options;
  torch::nn::Embedding src_embedding{nullptr}, tgt_embedding{nullptr};
  torch::Tensor positions;  // buffer (max_len, D)
  Dropout dropout{nullptr};
  torch::nn::ModuleList encoder{nullptr}, decoder{nullptr};
  zoo::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};  // pre-norm only
  torch::nn::Linear output{nullptr};  // untied only
  torch::Tensor output_bias;          // tied only: logits = x E^T + b

 private:
  torch::Tensor embed(torch::nn::Embedding& table, const torch::Tensor& ids, int64_t offset);
};
TORCH_MODULE(Transformer);

struct DecodeOptions {
  /// Hypotheses kept per source; 1 is greedy decoding.
  TORCH_ARG(int64_t, beam_size) = 4;
  /// alpha of the length penalty ((5 + |Y|) / 6)^alpha that divides a finished hypothesis'
  /// log-probability (Wu et al. 2016); 0 compares raw log-probabilities. At least 0.
  TORCH_ARG(double, length_penalty) = 0.6;
  /// Most tokens to generate, the end-of-sequence token included; below the model's max_len.
  TORCH_ARG(int64_t, max_len) = 64;
  TORCH_ARG(int64_t, bos_id) = 1;
  TORCH_ARG(int64_t, eos_id) = 2;
  /// Incremental decoding with a key/value cache; false recomputes the prefix at every step.
  TORCH_ARG(bool, use_cache) = true;
  /// Finished hypotheses wanted per source, at most beam_size: a source's search goes on until
  /// no live hypothesis can enter the best `nbest` finished ones (or beam_size have finished).
  /// 1, for the best answer alone, stops soonest; an n-best list wants more.
  TORCH_ARG(int64_t, nbest) = 1;
  /// Tokens never generated, besides padding and BOS (an unknown-token id no target holds, say).
  TORCH_ARG(std::vector<int64_t>, banned_ids);
};

struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS and EOS
  double log_prob = 0;          // sum of the tokens' log-probabilities, EOS included
  double score = 0;             // log_prob divided by the length penalty
  int64_t length = 0;           // |Y| of the length penalty: the positions scored, EOS included
};

/// The GNMT length penalty lp(|Y|) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016).
double length_penalty(int64_t length, double alpha);

/// The best hypothesis for each source row of src (B, S) by beam search (greedy for beam 1).
/// Live hypotheses that emit EOS, when that ending ranks among the beam_size best candidates of
/// the step (fairseq's rule), move to a finished list scored by log p / lp(|Y|); a source is
/// done when beam_size hypotheses have finished or no live one can beat the best finished one
/// (the nbest-th best, with DecodeOptions::nbest).
/// Padding, BOS and DecodeOptions::banned_ids are never generated. Runs under NoGradGuard with
/// the model in eval mode (no dropout), and leaves the model in the mode it found it in.
std::vector<Hypothesis> generate(TransformerImpl& model, const torch::Tensor& src, const DecodeOptions& options);

/// generate's finished list for each source row: every hypothesis that finished, best score
/// first (its front is what generate returns). It may hold more than beam_size: several can
/// finish at one step, and at max_len the beam_size best candidates of the last step do. For rescoring, or
/// for summing the probability of hypotheses that a coarser output space merges.
std::vector<std::vector<Hypothesis>> generate_nbest(TransformerImpl& model, const torch::Tensor& src,
                                                    const DecodeOptions& options);

/// The index in `nbest` (one source's finished hypotheses) of the best output once hypotheses
/// with equal `keys` are merged into one, as a coarser output space does (phones without their
/// stress marks, say): a key's probability is the sum of its hypotheses', and it is scored as they
/// are, log p / lp(|Y|). |Y| and the index returned are those of the key's first hypothesis in
/// nbest, its best as generate_nbest orders them (its length, where a key's lengths differ).
size_t best_merged(const std::vector<Hypothesis>& nbest, const std::vector<std::string>& keys, double alpha);

/// Every key once, best first, as best_merged scores them: the index in `nbest` of each key's
/// first hypothesis, in descending order of the key's merged score (ties: the order of nbest).
/// best_merged is its front.
std::vector<size_t> ranked_merged(const std::vector<Hypothesis>& nbest, const std::vector<std::string>& keys,
                                  double alpha);

/// Cross-entropy against label-smoothed targets q = (1 - eps) one_hot(y) + eps / V (Szegedy et
/// al. 2016, used in Sec. 5.4 of Vaswani et al.), averaged over positions whose target is not
/// ignore_index. logits (N, V), target (N).
torch::Tensor label_smoothed_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target, double eps,
                                           int64_t ignore_index);

}  // namespace zoo
