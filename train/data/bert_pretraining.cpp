#include "train/data/bert_pretraining.h"

#include <algorithm>
#include <cmath>

namespace zoo {
namespace {

/// Trims the longer of two segments, one token at a time from a random end, until they fit.
void truncate_pair(std::vector<int64_t>& a, std::vector<int64_t>& b, int64_t max_tokens, SplitMix64& rng) {
  // Counted first and cut once: erasing from the front token by token is quadratic in a long segment.
  size_t na = a.size(), nb = b.size(), front_a = 0, front_b = 0;
  while (static_cast<int64_t>(na + nb) > max_tokens) {
    const bool in_a = na > nb;
    const bool front = rng.uniform() < 0.5;
    if (front) ++(in_a ? front_a : front_b);
    --(in_a ? na : nb);
  }
  a.resize(front_a + na);
  a.erase(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(front_a));
  b.resize(front_b + nb);
  b.erase(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(front_b));
}

}  // namespace

void mask_tokens(PretrainingExample& ex, const WordPiece& vocab, const PretrainingOptions& o, SplitMix64& rng) {
  const auto n = ex.input_ids.size();
  ex.mlm_labels.assign(n, kIgnoreLabel);
  ex.mask_kind.assign(n, MaskKind::kNone);
  std::vector<size_t> candidates;
  for (size_t i = 0; i < n; ++i)
    if (!vocab.is_special(ex.input_ids[i]) || ex.input_ids[i] == vocab.unk_id()) candidates.push_back(i);
  if (candidates.empty()) return;
  for (size_t i = candidates.size(); i > 1; --i) std::swap(candidates[i - 1], candidates[rng.below(i)]);  // Fisher-Yates
  const auto picks = std::min<int64_t>(
      o.max_predictions,
      std::max<int64_t>(1, std::llround(static_cast<double>(candidates.size()) * o.mask_prob)));
  const int64_t specials = 5;  // random replacements come from the non-special tokens
  for (int64_t k = 0; k < picks; ++k) {
    const auto i = candidates[static_cast<size_t>(k)];
    ex.mlm_labels[i] = ex.input_ids[i];
    const double r = rng.uniform();
    if (r < 0.8) {
      ex.input_ids[i] = vocab.mask_id();
      ex.mask_kind[i] = MaskKind::kMask;
    } else if (r < 0.9) {
      int64_t tok;
      do tok = static_cast<int64_t>(rng.below(static_cast<uint64_t>(vocab.size())));
      while (vocab.is_special(tok) && vocab.size() > specials);
      ex.input_ids[i] = tok;
      ex.mask_kind[i] = MaskKind::kRandom;
    } else {
      ex.mask_kind[i] = MaskKind::kKeep;
    }
  }
}

std::vector<PretrainingExample> make_pretraining_examples(const std::vector<TokenizedDocument>& docs,
                                                          const WordPiece& vocab, const PretrainingOptions& o,
                                                          uint64_t seed) {
  SplitMix64 rng(seed);
  const int64_t max_tokens = o.max_length - 3;  // [CLS], [SEP], [SEP]
  if (max_tokens < 2) throw std::invalid_argument("pretraining examples need max_length >= 5");
  for (const auto& d : docs)
    if (d.empty()) throw std::invalid_argument("pretraining documents need at least one sentence each");
  std::vector<PretrainingExample> out;
  const auto n_docs = static_cast<int64_t>(docs.size());
  for (int64_t d = 0; d < n_docs; ++d) {
    const auto& doc = docs[static_cast<size_t>(d)];
    const auto n_sent = static_cast<int64_t>(doc.size());
    int64_t target = max_tokens;
    if (rng.uniform() < o.short_seq_prob) target = 2 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_tokens - 1)));
    int64_t chunk_begin = 0, chunk_len = 0;
    for (int64_t i = 0; i < n_sent; ++i) {
      chunk_len += static_cast<int64_t>(doc[static_cast<size_t>(i)].size());
      if (i != n_sent - 1 && chunk_len < target) continue;
      const int64_t chunk_end = i + 1, chunk_sents = chunk_end - chunk_begin;
      // A: sentences [chunk_begin, a_end), at least one.
      const int64_t a_end = chunk_begin + (chunk_sents >= 2 ? 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(chunk_sents - 1))) : 1);
      PretrainingExample ex;
      std::vector<int64_t> a, b;
      for (int64_t s = chunk_begin; s < a_end; ++s) a.insert(a.end(), doc[static_cast<size_t>(s)].begin(), doc[static_cast<size_t>(s)].end());
      ex.a_doc = d, ex.a_begin = chunk_begin, ex.a_end = a_end;
      const bool random_next = n_docs > 1 && (chunk_sents == 1 || rng.uniform() < 0.5);
      if (random_next) {
        const int64_t target_b = std::max<int64_t>(1, target - static_cast<int64_t>(a.size()));
        int64_t r = d;
        for (int tries = 0; tries < 10 && r == d; ++tries) r = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n_docs)));
        if (r == d) r = (d + 1) % n_docs;
        const auto& other = docs[static_cast<size_t>(r)];
        const int64_t start = static_cast<int64_t>(rng.below(other.size()));
        int64_t s = start;
        for (; s < static_cast<int64_t>(other.size()) && static_cast<int64_t>(b.size()) < target_b; ++s)
          b.insert(b.end(), other[static_cast<size_t>(s)].begin(), other[static_cast<size_t>(s)].end());
        ex.b_doc = r, ex.b_begin = start, ex.b_end = s;
        ex.next_sentence_label = 1;
        i = a_end - 1;  // the sentences after A were not used: they start the next chunk
      } else {
        for (int64_t s = a_end; s < chunk_end; ++s) b.insert(b.end(), doc[static_cast<size_t>(s)].begin(), doc[static_cast<size_t>(s)].end());
        ex.b_doc = d, ex.b_begin = a_end, ex.b_end = chunk_end;
        ex.next_sentence_label = 0;
      }
      if (!a.empty() && !b.empty()) {
        truncate_pair(a, b, max_tokens, rng);
        ex.input_ids.push_back(vocab.cls_id());
        ex.input_ids.insert(ex.input_ids.end(), a.begin(), a.end());
        ex.input_ids.push_back(vocab.sep_id());
        ex.token_type_ids.assign(ex.input_ids.size(), 0);
        ex.input_ids.insert(ex.input_ids.end(), b.begin(), b.end());
        ex.input_ids.push_back(vocab.sep_id());
        ex.token_type_ids.resize(ex.input_ids.size(), 1);
        mask_tokens(ex, vocab, o, rng);
        out.push_back(std::move(ex));
      }
      chunk_begin = i + 1;
      chunk_len = 0;
      target = max_tokens;
      if (rng.uniform() < o.short_seq_prob) target = 2 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_tokens - 1)));
    }
  }
  return out;
}

}  // namespace zoo
