// BERT (Devlin et al. 2018): the WordPiece tokenizer, the pretraining data pipeline (exact
// and statistical checks on real Brown documents), the encoder's contracts, and the
// pretrain -> fine-tune path end to end.
#include "tests/catch.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "helpers.h"
#include "models/bert.h"
#include "models/wordpiece.h"
#include "train/data/bert_pretraining.h"
#include "train/data/brown.h"
#include "train/data/spamassassin.h"
#include "train/tasks/bert.h"
#include "train/trainer.h"

using Catch::Matchers::Contains;
using zoo::test::q;

namespace {

std::string data_dir(const std::string& name) {
  const char* env = std::getenv("ZOO_DATA");
  return (env ? std::string(env) : zoo::test::source_dir() + "/data") + "/" + name;
}

/// Checks that a fine-tuning run starts from a pretrained checkpoint: each of its encoder's
/// weights (bert.*) equals the checkpoint's. Returns how many it compared.
int64_t check_encoder_from(zoo::Trainer& run, const std::string& pretrained) {
  zoo::Config cfg;
  auto from = zoo::load_task(pretrained, {"train.device=cpu"}, &cfg, /*runtime=*/false);
  auto before = from->model().named_parameters();
  int64_t compared = 0;
  for (const auto& p : run.task().model().named_parameters()) {
    if (p.key().rfind("bert.", 0) != 0) continue;  // the new head
    INFO(p.key());
    REQUIRE(before.contains(p.key()));
    CHECK(torch::equal(p.value(), before[p.key()]));
    ++compared;
  }
  return compared;
}

/// A small vocab.txt in the layout of Google's BERT vocabularies (specials not first).
zoo::WordPiece small_vocab() {
  auto dir = zoo::test::scratch("vocab");
  auto path = dir + "/vocab.txt";
  std::ofstream(path) << "[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ndog\nis\nbark\n##ing\nun\n##aff\n##able\n"
                         "cafe\n.\n,\n!\nplay\n##ed\n##s\na\n##b\n##c\nb\nc\n";
  return zoo::WordPiece::load(path);
}

/// Brown's training documents as WordPiece ids, with a vocabulary built from them (once).
struct BrownFixture {
  zoo::WordPiece vocab;
  std::vector<zoo::TokenizedDocument> docs;
  static const BrownFixture& get() {
    static const BrownFixture f = [] {
      BrownFixture b;
      auto brown = zoo::load_brown(data_dir("brown"), "train");
      std::vector<std::string> texts;
      for (const auto& d : brown)
        for (const auto& s : d.sentences) {
          std::string t;
          for (const auto& w : s.words) t += w + " ";
          texts.push_back(t);
        }
      zoo::WordPieceTrainOptions o;
      o.vocab_size = 3000;
      b.vocab = zoo::WordPiece::train(texts, o);
      for (size_t d = 0; d < brown.size(); ++d) {
        zoo::TokenizedDocument doc;
        for (const auto& s : brown[d].sentences) {
          std::vector<int64_t> ids;
          for (const auto& w : s.words)
            for (auto id : b.vocab.encode(w)) ids.push_back(id);
          if (!ids.empty()) doc.push_back(ids);
        }
        b.docs.push_back(doc);
      }
      return b;
    }();
    return f;
  }
};

zoo::BertModel tiny_bert() {
  torch::manual_seed(0);
  auto m = zoo::BertModel(zoo::BertOptions(50).hidden_size(32).num_layers(2).num_heads(4).intermediate_size(64));
  m->eval();
  return m;
}

}  // namespace

TEST_CASE("WordPiece: a BERT vocab.txt, greedy longest-match-first with ## continuations", "[bert][tokenizer]") {
  auto v = small_vocab();
  CHECK(v.size() == 26);
  CHECK(v.unk_id() == 2);
  CHECK(v.mask_id() == 5);
  CHECK(v.tokenize("unaffable") == std::vector<std::string>{"un", "##aff", "##able"});
  CHECK(v.tokenize("The dog is barking!") == std::vector<std::string>{"the", "dog", "is", "bark", "##ing", "!"});
  CHECK(v.tokenize("The [MASK] is barking.") == std::vector<std::string>{"the", "[MASK]", "is", "bark", "##ing", "."});
  CHECK(v.tokenize("CAFÉ, Café") == std::vector<std::string>{"cafe", ",", "cafe"});  // lower-case, accents stripped
  CHECK(v.tokenize("played plays") == std::vector<std::string>{"play", "##ed", "play", "##s"});
  CHECK(v.tokenize("abc cab") == std::vector<std::string>{"a", "##b", "##c", "[UNK]"});  // "cab": no "##a", so all of it
  CHECK(v.tokenize("xyz") == std::vector<std::string>{"[UNK]"});
  CHECK(v.encode("the dog") == std::vector<int64_t>{6, 7});
  CHECK(v.decode(v.encode("the dog is barking.")) == "the dog is barking .");
  CHECK(v.decode({3, 6, 7, 4}) == "the dog");  // specials skipped
}

TEST_CASE("WordPiece: empty and invalid UTF-8 input have defined results", "[bert][tokenizer]") {
  auto v = small_vocab();
  CHECK(v.tokenize("").empty());
  CHECK(v.tokenize("   \t\n").empty());
  // Invalid bytes (a lone continuation, a truncated sequence, an overlong '/', a surrogate) are dropped.
  CHECK(v.tokenize("the\x80 dog\xc3") == std::vector<std::string>{"the", "dog"});
  CHECK(v.tokenize("\xc0\xaf\xed\xa0\x80the") == std::vector<std::string>{"the"});
  CHECK(v.tokenize(std::string("the\0dog", 7)) == std::vector<std::string>{"[UNK]"});  // NUL dropped: "thedog"
  std::string noise;
  for (int i = 0; i < 4096; ++i) noise.push_back(static_cast<char>((i * 7919) & 0xFF));
  CHECK_NOTHROW(v.tokenize(noise));
  CHECK(v.tokenize(std::string(300, 'a')) == std::vector<std::string>{"[UNK]"});  // longer than 100 characters
  CHECK_THROWS_WITH(zoo::WordPiece::load("/nonexistent/vocab.txt"), Contains("/nonexistent/vocab.txt"));
}

TEST_CASE("WordPiece: a vocabulary built from a corpus covers it and is deterministic", "[bert][tokenizer]") {
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i) texts.push_back("the quick brown fox jumps over the lazy dog; the dogs were jumping");
  texts.push_back("zebra");
  zoo::WordPieceTrainOptions o;
  o.vocab_size = 100;
  auto a = zoo::WordPiece::train(texts, o), b = zoo::WordPiece::train(texts, o);
  CHECK(a.to_text() == b.to_text());
  // Not on the order of the texts or of hash tables: ties are broken by the pieces themselves.
  const std::vector<std::string> reordered(texts.rbegin(), texts.rend());  // "zebra" first: other words and characters
  CHECK(zoo::WordPiece::train(reordered, o).to_text() == a.to_text());
  CHECK(a.size() <= 100);
  CHECK(a.token(0) == "[PAD]");
  CHECK(a.contains("the"));   // frequent words become single tokens
  CHECK(a.contains("z"));     // every character of the corpus is there, as a start and a continuation:
  CHECK(a.contains("##z"));
  CHECK(a.contains("##q"));   // even where the corpus has none: no "q" follows another letter,
  CHECK(a.contains("u"));     // and no word starts with "u"
  CHECK(a.tokenize("quiz") == std::vector<std::string>{"q", "##u", "##i", "##z"});
  const auto zebra = a.tokenize("the zebra jumps");
  REQUIRE_FALSE(zebra.empty());
  for (const auto& t : zebra) CHECK(t != "[UNK]");
  CHECK(a.decode(a.encode("the lazy dogs were jumping")) == "the lazy dogs were jumping");
}

TEST_CASE("Brown: documents split by id, universal tags mapped", "[bert][data]") {
  auto all = zoo::load_brown(data_dir("brown"), "all");
  REQUIRE(all.size() == 500);
  std::map<std::string, int> n;
  for (const auto& d : all) ++n[zoo::brown_split(d.id)];
  CHECK(n["train"] + n["val"] + n["test"] == 500);
  CHECK(n["val"] >= 35);
  CHECK(n["test"] >= 35);
  CHECK(all[0].id == "ca01");
  CHECK(all[0].genre == "news");
  CHECK(all[0].sentences[0].words[0] == "The");
  CHECK(all[0].sentences[0].tags[1] == "np-tl");
  CHECK(zoo::universal_tag("np-tl") == "NOUN");
  CHECK(zoo::universal_tag("vbd") == "VERB");
  CHECK(zoo::universal_tag("ppss+bem") == "PRON");
  CHECK(zoo::universal_tag("bez*") == "VERB");
  CHECK(zoo::universal_tag("*") == "ADV");
  CHECK(zoo::universal_tag("``") == ".");
  CHECK(zoo::universal_tag("(-hl") == ".");
  CHECK(zoo::universal_tag("fw-nn") == "X");
  CHECK(zoo::universal_tag("at") == "DET");
  CHECK(zoo::universal_tag("in-tl") == "ADP");
  CHECK(zoo::universal_tag("pp$$") == "PRON");
  CHECK(zoo::universal_tag("to") == "PRT");
  std::set<std::string> seen;
  for (const auto& d : all)
    for (const auto& s : d.sentences)
      for (const auto& t : s.tags) seen.insert(zoo::universal_tag(t));
  CHECK(seen.size() == 12);  // every universal tag occurs, and nothing else
}

TEST_CASE("pretraining data: [CLS] A [SEP] B [SEP], IsNext pairs consecutive, NotNext from another document",
          "[bert][data]") {
  const auto& f = BrownFixture::get();
  zoo::PretrainingOptions o;
  auto ex = zoo::make_pretraining_examples(f.docs, f.vocab, o, /*seed=*/7);
  REQUIRE(ex.size() > 5000);
  int64_t is_next = 0;
  for (const auto& e : ex) {
    REQUIRE(static_cast<int64_t>(e.input_ids.size()) <= o.max_length);
    REQUIRE(e.input_ids.front() == f.vocab.cls_id());
    REQUIRE(e.input_ids.back() == f.vocab.sep_id());
    const auto first_sep = std::find(e.input_ids.begin() + 1, e.input_ids.end(), f.vocab.sep_id()) - e.input_ids.begin();
    REQUIRE(e.token_type_ids.size() == e.input_ids.size());
    REQUIRE(e.mlm_labels.size() == e.input_ids.size());
    for (size_t i = 0; i < e.token_type_ids.size(); ++i) REQUIRE(e.token_type_ids[i] == (static_cast<int64_t>(i) > first_sep ? 1 : 0));
    // A and B, with masked LM's changes undone, are each one piece of the sentences they say they
    // come from (truncation cuts tokens off either end, never from the middle).
    std::vector<int64_t> tokens(e.input_ids.size());
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = e.mlm_labels[i] == zoo::kIgnoreLabel ? e.input_ids[i] : e.mlm_labels[i];
    auto piece_of = [&](int64_t doc, int64_t begin, int64_t end, int64_t from, int64_t to) {
      std::vector<int64_t> text;
      for (auto s = begin; s < end; ++s) text.insert(text.end(), f.docs[doc][s].begin(), f.docs[doc][s].end());
      return to > from && std::search(text.begin(), text.end(), tokens.begin() + from, tokens.begin() + to) != text.end();
    };
    REQUIRE(piece_of(e.a_doc, e.a_begin, e.a_end, 1, first_sep));
    REQUIRE(piece_of(e.b_doc, e.b_begin, e.b_end, first_sep + 1, static_cast<int64_t>(tokens.size()) - 1));
    if (e.next_sentence_label == 0) {
      ++is_next;
      REQUIRE(e.b_doc == e.a_doc);
      REQUIRE(e.b_begin == e.a_end);  // B starts with the sentence that follows A
      REQUIRE(e.b_end > e.b_begin);
    } else {
      REQUIRE(e.b_doc != e.a_doc);
    }
  }
  const double p = static_cast<double>(is_next) / static_cast<double>(ex.size());
  INFO(ex.size() << " examples, IsNext " << p);
  CHECK(p == Approx(0.5).margin(0.03));
  // The same seed gives the same examples; another seed other ones.
  auto again = zoo::make_pretraining_examples(f.docs, f.vocab, o, 7);
  CHECK(again[100].input_ids == ex[100].input_ids);
  auto other = zoo::make_pretraining_examples(f.docs, f.vocab, o, 8);
  CHECK(other[100].input_ids != ex[100].input_ids);
}

TEST_CASE("masked LM: 15% of non-special tokens, 80/10/10, specials never masked", "[bert][data]") {
  const auto& f = BrownFixture::get();
  zoo::PretrainingOptions o;
  auto ex = zoo::make_pretraining_examples(f.docs, f.vocab, o, /*seed=*/11);
  double candidates = 0, picked = 0, masked = 0, random = 0, kept = 0, replaced = 0;
  for (const auto& e : ex) {
    for (size_t i = 0; i < e.input_ids.size(); ++i) {
      const auto kind = e.mask_kind[i];
      const auto label = e.mlm_labels[i];
      const auto original = label == zoo::kIgnoreLabel ? e.input_ids[i] : label;
      if (f.vocab.is_special(original) && original != f.vocab.unk_id()) {
        REQUIRE(kind == zoo::MaskKind::kNone);  // [CLS], [SEP] are never picked
        REQUIRE(label == zoo::kIgnoreLabel);
        continue;
      }
      candidates += 1;
      if (kind == zoo::MaskKind::kNone) {
        REQUIRE(label == zoo::kIgnoreLabel);
        continue;
      }
      picked += 1;
      REQUIRE(label != zoo::kIgnoreLabel);
      if (kind == zoo::MaskKind::kMask) {
        masked += 1;
        REQUIRE(e.input_ids[i] == f.vocab.mask_id());
      } else if (kind == zoo::MaskKind::kKeep) {
        kept += 1;
        REQUIRE(e.input_ids[i] == label);
      } else {
        random += 1;
        replaced += e.input_ids[i] != label;  // a random token is the original only by chance (1 in 8,000)
        REQUIRE_FALSE(f.vocab.is_special(e.input_ids[i]));
      }
    }
  }
  INFO("picked " << picked << " of " << candidates);
  CHECK(picked / candidates == Approx(0.15).margin(0.005));
  CHECK(masked / picked == Approx(0.8).margin(0.01));
  CHECK(random / picked == Approx(0.1).margin(0.01));
  CHECK(replaced / random > 0.99);
  CHECK(kept / picked == Approx(0.1).margin(0.01));
}

TEST_CASE("BERT encoder: outputs depend on both sides, padding leaves real tokens unchanged", "[bert]") {
  auto m = tiny_bert();
  torch::NoGradGuard g;
  auto ids = torch::randint(5, 50, {1, 9}, torch::kLong);
  auto base = m->forward(ids).sequence;
  for (int64_t j : {0, 8}) {
    auto changed = ids.clone();
    changed[0][j] = ids[0][j].item<int64_t>() == 5 ? 6 : 5;
    INFO("changed position " << j);
    CHECK_FALSE(torch::allclose(base.select(1, 4), m->forward(changed).sequence.select(1, 4)));
  }
  auto padded = torch::cat({ids, torch::zeros({1, 4}, torch::kLong)}, 1);
  auto mask = torch::cat({torch::ones({1, 9}, torch::kLong), torch::zeros({1, 4}, torch::kLong)}, 1);
  auto out = m->forward(padded, torch::zeros_like(padded), mask);
  CHECK(torch::allclose(base, out.sequence.narrow(1, 0, 9), 1e-5, 1e-6));
  CHECK(torch::allclose(m->forward(ids).pooled, out.pooled, 1e-5, 1e-6));
  // Segment ids matter.
  auto seg = torch::cat({torch::zeros({1, 5}, torch::kLong), torch::ones({1, 4}, torch::kLong)}, 1);
  CHECK_FALSE(torch::allclose(base, m->forward(ids, seg).sequence));
}

TEST_CASE("BERT pretraining takes a step under the CPU's bf16 autocast (train.precision=bf16)", "[bert]") {
  // Its MLM head's LayerNorm gets the bf16 output of a linear layer there: a crash with
  // torch::nn::LayerNorm on LibTorch 1.13, float with zoo::LayerNorm (models/common/norm.h).
  torch::manual_seed(0);
  auto m = zoo::BertForPreTraining(zoo::BertOptions(50).hidden_size(32).num_layers(2).num_heads(4).intermediate_size(64));
  auto ids = torch::randint(5, 50, {2, 9}, torch::kLong);
  auto loss_of = [&](const zoo::BertPreTrainingOutput& out) {
    return torch::nn::functional::cross_entropy(out.mlm_logits.reshape({-1, 50}).to(torch::kFloat), ids.reshape({-1})) +
           torch::nn::functional::cross_entropy(out.nsp_logits.to(torch::kFloat), torch::zeros({2}, torch::kLong));
  };
  torch::manual_seed(1);  // the same dropout masks in both
  const auto reference = loss_of(m->forward(ids, torch::zeros_like(ids), torch::ones_like(ids)));
  torch::Tensor loss;
  {
    torch::manual_seed(1);
    zoo::Autocast amp(true, torch::kBFloat16, c10::DeviceType::CPU);
    auto out = m->forward(ids, torch::zeros_like(ids), torch::ones_like(ids));
    CHECK(out.mlm_logits.scalar_type() == torch::kBFloat16);
    loss = loss_of(out);
  }
  zoo::test::check_backward_in_float(*m, loss, reference);
}

TEST_CASE("BERT parameters follow the usual layout, and the MLM decoder is the word embedding", "[bert]") {
  auto m = zoo::BertForPreTraining(zoo::BertOptions::preset("tiny", 100));
  auto p = m->named_parameters();
  for (const char* name : {"bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
                           "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                           "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.attention.self.value.bias",
                           "bert.encoder.layer.0.attention.output.dense.weight",
                           "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.0.intermediate.dense.weight",
                           "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.0.output.LayerNorm.weight",
                           "bert.pooler.dense.weight", "cls.predictions.transform.dense.weight",
                           "cls.predictions.transform.LayerNorm.weight", "cls.predictions.bias", "cls.seq_relationship.weight"}) {
    INFO(name);
    CHECK(p.contains(name));
  }
  CHECK(m->cls->predictions->decoder->weight.data_ptr() == m->bert->embeddings->word_embeddings->weight.data_ptr());
  CHECK(m->bert->options.hidden_size() == 128);
  CHECK(m->bert->options.num_layers() == 2);
  CHECK(zoo::BertOptions::preset("base", 30522).num_heads() == 12);
  CHECK_THROWS(zoo::BertOptions::preset("huge", 10));
}

TEST_CASE("BERT modules clone: the same outputs, their own parameters, the copy's decoder tied to its own embedding", "[bert]") {
  torch::manual_seed(0);
  auto m = zoo::BertForPreTraining(zoo::BertOptions::preset("tiny", 100));
  m->eval();
  auto copy = std::dynamic_pointer_cast<zoo::BertForPreTrainingImpl>(m->clone());
  REQUIRE(copy);
  copy->eval();
  auto ids = torch::randint(5, 100, {2, 9}), types = torch::zeros({2, 9}, torch::kLong), mask = torch::ones({2, 9});
  auto a = m->forward(ids, types, mask), b = copy->forward(ids, types, mask);
  CHECK(torch::equal(a.mlm_logits, b.mlm_logits));
  CHECK(torch::equal(a.nsp_logits, b.nsp_logits));
  const auto params = m->named_parameters(), copied = copy->named_parameters();
  REQUIRE(copied.size() == params.size());
  for (const auto& p : params) CHECK(copied[p.key()].data_ptr() != p.value().data_ptr());
  // The tie: the copy's MLM decoder is the copy's word embedding, and the original keeps its own.
  CHECK(copy->cls->predictions->decoder->weight.data_ptr() == copy->bert->embeddings->word_embeddings->weight.data_ptr());
  CHECK(m->cls->predictions->decoder->weight.data_ptr() == m->bert->embeddings->word_embeddings->weight.data_ptr());
  // A change to the copy's embedding of token 0 (no input holds it: ids are 5 to 99) moves the
  // copy's logit of token 0 alone, and not the original's.
  {
    torch::NoGradGuard no_grad;
    copy->bert->embeddings->word_embeddings->weight[0].normal_();
  }
  const auto changed = copy->forward(ids, types, mask).mlm_logits;
  using torch::indexing::Slice;
  using torch::indexing::None;
  CHECK_FALSE(torch::equal(changed.index({Slice(), Slice(), 0}), a.mlm_logits.index({Slice(), Slice(), 0})));
  CHECK(torch::equal(changed.index({Slice(), Slice(), Slice(1, None)}), a.mlm_logits.index({Slice(), Slice(), Slice(1, None)})));
  CHECK(torch::equal(m->forward(ids, types, mask).mlm_logits, a.mlm_logits));
  // A fine-tuning model clones too.
  auto tagger = zoo::BertForTokenClassification(zoo::BertOptions::preset("tiny", 100), 12);
  tagger->eval();
  auto tagger_copy = std::dynamic_pointer_cast<zoo::BertForTokenClassificationImpl>(tagger->clone());
  REQUIRE(tagger_copy);
  tagger_copy->eval();
  CHECK(torch::equal(tagger->forward(ids, types, mask), tagger_copy->forward(ids, types, mask)));
  CHECK(tagger_copy->classifier->weight.size(0) == 12);
}

TEST_CASE("SpamAssassin: subject and body, MIME decoded, split by body", "[bert][data]") {
  const std::string raw =
      "From: a@b.c\nSubject: Cheap\n  offers\nContent-Type: text/html\nContent-Transfer-Encoding: quoted-printable\n\n"
      "<p>Buy =3D now</p>=\nlater";
  CHECK(zoo::email_text(raw) == "Subject: Cheap offers\n Buy = now later");
  // MIME (RFC 2045-2047): an encoded-word subject, a multipart/mixed body holding a
  // multipart/alternative (its text/plain part, base64) and a GIF, HTML with a style block,
  // a comment and character references.
  const std::string mime =
      "Subject: =?iso-8859-1?Q?Caf=E9_offer?= =?utf-8?B?Zm9yIHlvdQ==?=\n"
      "Content-Type: multipart/mixed;\n\tboundary=\"outer\"\n\n"
      "This is a multi-part message in MIME format.\n"
      "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
      "--inner\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
      "SGVsbG8sIHdv\ncmxkIQ==\n"
      "--inner\nContent-Type: text/html\n\n<b>Hello, world!</b>\n--inner--\n"
      "--outer\nContent-Type: image/gif; name=x.gif\nContent-Transfer-Encoding: base64\n\nR0lGODlh\n"
      "--outer\nContent-Type: text/html\n\n<style>p {color: red}</style><p>Fish &amp; chips<!-- x -->&#33;</p>\n"
      "--outer--\nepilogue\n";
  CHECK(zoo::email_text(mime) ==
        "Subject: Caf\xE9 offerfor you\nHello, world!\n[attachment: image/gif]\n  Fish & chips! \n");
  // Malformed mail as it comes: a boundary no line uses (the body is text), a delimiter that is
  // only a prefix of a line (not a delimiter), a stray "=?", a soft line break after spaces,
  // a "<" that starts no tag.
  CHECK(zoo::email_text("Subject: Re: =? hi =?utf-8?Q?a=41?=\nContent-Type: multipart/mixed; boundary=\"=B\"\n"
                        "Content-Transfer-Encoding: quoted-printable\n\n"
                        "--= B\nBuy now =  \nplease, 1 < 2\n") ==
        "Subject: Re: =? hi aA\n--= B\nBuy now please, 1 < 2\n");
  CHECK(zoo::email_text("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--bb\ntwo\n--b--\n") ==
        "Subject: \none\n--bb\ntwo\n");
  // Any prefix of a message is read without a crash.
  for (size_t n = 0; n <= mime.size(); ++n) CHECK_NOTHROW(zoo::email_text(mime.substr(0, n)));
  auto test = zoo::load_spamassassin(data_dir("spamassassin"), "test");
  auto train = zoo::load_spamassassin(data_dir("spamassassin"), "train");
  CHECK(test.size() + train.size() + zoo::load_spamassassin(data_dir("spamassassin"), "val").size() == 6046);
  {  // No held-out message has a training message's body, byte for byte (the bytes after the header's
     // blank line): with the split by file digest of old, 23 test messages had (bench/spam_unseen.py).
    std::set<std::string> train_bodies;
    std::vector<std::string> held_out;
    for (const auto& m : zoo::load_spamassassin(data_dir("spamassassin"), "all")) {
      std::ifstream f(data_dir("spamassassin") + "/data/" + m.id + ".txt", std::ios::binary);
      std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()), lf;
      for (size_t i = 0; i < raw.size(); ++i)
        if (!(raw[i] == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n')) lf += raw[i];
      const auto end = lf.find("\n\n");
      auto body = end == std::string::npos ? std::string() : lf.substr(end + 2);
      if (m.split == "train") train_bodies.insert(std::move(body));
      else held_out.push_back(std::move(body));
    }
    CHECK(held_out.size() > 1000);
    CHECK(std::count_if(held_out.begin(), held_out.end(), [&](const auto& b) { return train_bodies.count(b); }) == 0);
  }
  {  // Two deliveries of each of 40 messages (another Date and Message-Id, another subject, another
     // transfer encoding, other line breaks) share their split, and the 40 fall into all three splits.
    namespace fs = std::filesystem;
    auto dir = zoo::test::scratch("spam-deliveries");
    for (const char* f : {"easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"}) fs::create_directories(dir + "/data/" + f);
    for (int i = 0; i < 40; ++i) {
      const auto n = std::to_string(i);
      const std::string body = "Message number " + n + " of the test corpus, long enough to wrap.\n";
      auto wrapped = body;  // the second copy wrapped elsewhere: a line break for a space
      wrapped.replace(wrapped.find(" long"), 1, "\n");
      std::ofstream(dir + "/data/easy-ham-1/" + std::to_string(10000 + i) + ".a" + n + ".txt")
          << "Date: Mon, 1 Jul 2002\nSubject: one\n\n" << body;
      std::ofstream(dir + "/data/spam-2/" + std::to_string(10000 + i) + ".b" + n + ".txt")
          << "Date: Tue, 2 Jul 2002\nMessage-Id: <" << n << "@x>\nSubject: two\n"
          << "Content-Transfer-Encoding: quoted-printable\n\n" << wrapped.substr(0, 20) << "=\n" << wrapped.substr(20);
    }
    auto all = zoo::load_spamassassin(dir, "all");
    REQUIRE(all.size() == 80);
    std::map<std::string, std::string> split_of;  // message number -> split
    std::set<std::string> splits;
    for (const auto& m : all) {
      const auto n = m.id.substr(m.id.find('.') + 2);
      INFO(m.id << ": " << m.text);
      CHECK(split_of.emplace(n, m.split).first->second == m.split);
      splits.insert(m.split);
    }
    CHECK(splits == std::set<std::string>{"train", "val", "test"});
  }
  int spam = 0;
  for (const auto& m : test) spam += m.spam;
  CHECK(spam > 100);
  CHECK(spam < static_cast<int>(test.size()) - 200);
  // Entity references and encoded words as a damaged message has them: text, and read in one pass.
  CHECK(zoo::email_text("Subject: =?a=?a=?utf-8?q?b?= c\n\n<html>&&amp;&nosuchreference;</html>\n") ==
        "Subject: =?a=?ab c\n &&&nosuchreference; \n");
  // A corpus with one class only: text enough for pretraining; for spam detection, which would
  // score nothing, refused naming the split.
  auto dir = zoo::test::scratch("spam-one-class");
  namespace fs = std::filesystem;
  fs::create_directories(dir + "/data");
  for (const char* f : {"easy-ham-1", "easy-ham-2", "hard-ham-1"})
    fs::create_directory_symlink(data_dir("spamassassin") + "/data/" + f, dir + "/data/" + f);
  for (const char* f : {"spam-1", "spam-2"}) fs::create_directories(dir + "/data/" + f);
  CHECK(zoo::load_spamassassin(dir, "val").size() > 100);
  std::ofstream(dir + "/spam.yaml")
      << "task: bert_spam\n"
         "train: {device: cpu, threads: 2, steps: 1, batch_size: 4, eval_every: 0}\n"
         "model: {pretrained: '', size: tiny}\n"
         "data: {root: " + zoo::test::yaml_str(dir) + ", vocab_corpus: " + zoo::test::yaml_str(dir) + ", vocab_size: 500, train_limit: 40, eval_limit: 20}\n";
  auto cfg = zoo::Config::from_file(dir + "/spam.yaml");
  CHECK_THROWS_WITH([&] { zoo::Trainer(cfg, {dir + "/run"}).run(); }(),
                    Contains("the val messages under " + dir) && Contains("0 of them spam: both classes are needed"));
}

TEST_CASE("a Brown data.root without val or test documents is refused before the first step", "[bert][data]") {
  // Training validates on val and ends with test: a corpus of training documents alone fails at
  // once, naming the split, not after its steps (and with the message of the documents it lists).
  auto dir = zoo::test::scratch("brown-train-only");
  namespace fs = std::filesystem;
  const auto brown = data_dir("brown");
  fs::create_directories(dir + "/brown");
  {
    std::ofstream cats(dir + "/brown/cats.txt");
    int n = 0;
    for (const auto& d : zoo::load_brown(brown, "train")) {
      fs::create_symlink(brown + "/" + d.id, dir + "/brown/" + d.id);
      cats << d.id << " " << d.genre << "\n";
      if (++n == 6) break;
    }
  }
  CHECK(zoo::load_brown(dir + "/brown", "train").size() == 6);
  CHECK_THROWS_WITH(zoo::load_brown(dir + "/brown", "val"),
                    Contains(dir + "/brown/cats.txt lists no documents of the val split"));
  for (const std::string task : {"bert_mlm", "bert_pos"}) {
    INFO(task);
    std::ofstream(dir + "/" + task + ".yaml")
        << "task: " + task + "\n"
           "train: {device: cpu, threads: 2, steps: 2, batch_size: 4, eval_every: 0, checkpoint_every: 1}\n"
           "model: {size: tiny" + (task == "bert_pos" ? ", pretrained: ''" : "") + "}\n"
           "data: {root: '" + dir + "/brown', vocab_corpus: '" + dir + "/brown', vocab_size: 300}\n";
    auto cfg = zoo::Config::from_file(dir + "/" + task + ".yaml");
    const auto run = dir + "/run-" + task;
    CHECK_THROWS_WITH([&] { zoo::Trainer(cfg, {run}).run(); }(), Contains("lists no documents of the val split"));
    CHECK(zoo::list_step_checkpoints(run + "/checkpoints").empty());
  }
}

TEST_CASE("pretrain BERT on Brown, fill-mask from it, fine-tune POS tagging from it", "[bert][learn]") {
  auto dir = zoo::test::scratch("bert");
  const auto brown = data_dir("brown");
  const std::string common =
      "train: {device: cpu, threads: 2, seed: 1, batch_size: 32, log_every: 10, eval_every: 0, checkpoint_every: 1000}\n";
  std::ofstream(dir + "/mlm.yaml") << "task: bert_mlm\n" << common
                                   << "model: {size: tiny, dropout: 0.0, attention_dropout: 0.0}\n"
                                   << "data: {root: " + zoo::test::yaml_str(brown) + ", vocab_corpus: " + zoo::test::yaml_str(brown) +
                                          ", vocab_size: 2000, eval_limit: 200}\n"
                                      "optim: {lr: 0.002, warmup_steps: 10}\n";
  auto cfg = zoo::Config::from_file(dir + "/mlm.yaml", {"train.steps=60"});
  zoo::Trainer pre(cfg, {dir + "/mlm"});
  auto m = pre.run();
  INFO("MLM loss " << m.at("mlm_loss") << ", accuracy " << m.at("mlm_accuracy") << ", NSP accuracy " << m.at("nsp_accuracy"));
  CHECK(m.at("mlm_loss") < 7.0);  // below ln 2000 = 7.6, a uniform guess: it has learned at least the token frequencies
  const auto ckpt = dir + "/mlm/checkpoints/best.pt";

  auto fill = zoo::test::run(zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt) + " 'He went to [MASK] store.' --top 3");
  CHECK(fill.code == 0);
  {  // "[MASK] 1:  token p  token p  token p": the --top 3 candidates, most probable first
    INFO(fill.output);
    const auto at = fill.output.find("[MASK] 1:");
    REQUIRE(at != std::string::npos);
    std::istringstream fields(fill.output.substr(at + 9, fill.output.find('\n', at) - at - 9));
    std::vector<double> probs;
    std::string token;
    for (double p; fields >> token >> p;) probs.push_back(p);
    REQUIRE(probs.size() == 3);
    for (size_t i = 0; i < probs.size(); ++i) {
      CHECK(probs[i] > 0.0);
      CHECK(probs[i] <= 1.0);
      if (i > 0) CHECK(probs[i] <= probs[i - 1]);
    }
  }
  auto none = zoo::test::run(zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt) + " 'no mask here'");
  CHECK(none.code == 2);
  CHECK_THAT(none.output, Contains("no [MASK]"));
  // Longer than the run's data.max_length (128 here): positions it never trained, so refused, or
  // read where data.max_length is set higher.
  std::string words;
  for (int i = 0; i < 200; ++i) words += "the ";
  auto too_long = zoo::test::run(zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt) + " '" + words + "[MASK].'");
  CHECK(too_long.code == 2);
  CHECK_THAT(too_long.output, Contains("fill-mask: the text is 204 tokens long with [CLS] and [SEP], over "
                                       "data.max_length 128 (the run's, unless --set)"));
  CHECK(zoo::test::run(zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt) + " --set data.max_length=256 '" +
                       words + "[MASK].'").code == 0);
  {  // Texts on standard input: a line each, "text<TAB>token p token p token p" (a field per [MASK]),
     // the same tokens and probabilities as the text given alone.
    auto piped = zoo::test::run("printf 'He went to [MASK] store.\\nThe [MASK] was [MASK].\\n' | " +
                                zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt) + " --top 3");
    INFO(piped.output);
    REQUIRE(piped.code == 0);
    std::istringstream lines(piped.output);
    std::vector<std::string> rows;
    for (std::string line; std::getline(lines, line);) rows.push_back(line);
    REQUIRE(rows.size() == 2);
    const auto at = fill.output.find("[MASK] 1:");
    std::string alone = fill.output.substr(at + 9, fill.output.find('\n', at) - at - 9);
    std::string joined;  // "  t1 p1  t2 p2" -> "t1 p1 t2 p2"
    std::istringstream words(alone);
    for (std::string w; words >> w;) joined += (joined.empty() ? "" : " ") + w;
    CHECK(rows[0] == "He went to [MASK] store.\t" + joined);
    CHECK(std::count(rows[1].begin(), rows[1].end(), '\t') == 2);  // two [MASK]s
    // An empty line gets an empty line; a text without [MASK] exits 2 after the lines before it.
    auto bad = zoo::test::run("printf 'The [MASK] sat.\\n\\nno mask here\\nThe [MASK] ran.\\n' | " +
                              zoo::test::zoo_bin() + " fill-mask --checkpoint " + q(ckpt));
    CHECK(bad.code == 2);
    CHECK_THAT(bad.output, Contains("The [MASK] sat.\t"));
    CHECK_THAT(bad.output, Contains("\n\nzoo: error: zoo fill-mask: line 3 of standard input: fill-mask: the text has "
                                    "no [MASK] token"));
    CHECK(bad.output.find("The [MASK] sat.\t") < bad.output.find("zoo: error:"));
    CHECK_THAT(bad.output, !Contains("ran."));
  }

  // zoo embed: the mean of the last layer's states over [CLS] text [SEP], whatever else is in the call.
  const std::string short_text = "He went to the store.";
  auto alone = zoo::test::run(zoo::test::zoo_bin() + " embed --checkpoint " + q(ckpt) + " '" + short_text + "'");
  INFO(alone.output);
  REQUIRE(alone.code == 0);
  auto padded = zoo::test::run(zoo::test::zoo_bin() + " embed --checkpoint " + q(ckpt) + " --texts 'It was the best of " +
                               "times, it was the worst of times, it was the age of wisdom.' '" + short_text + "'");
  REQUIRE(padded.code == 0);
  auto one = zoo::test::embedding_rows(alone.output), two = zoo::test::embedding_rows(padded.output);
  REQUIRE(one.defined());
  REQUIRE(two.defined());
  REQUIRE(one.sizes() == torch::IntArrayRef({1, 128}));  // BERT-tiny's width
  REQUIRE(two.size(0) == 2);
  CHECK(torch::allclose(two[1], one[0], 1e-5, 1e-5));  // padding after the short text changes nothing
  CHECK_FALSE(torch::allclose(two[0], one[0], 1e-3, 1e-3));
  std::vector<float> pooled;
  {
    torch::NoGradGuard no_grad;
    auto task = zoo::load_task(ckpt, {});
    auto& mlm = dynamic_cast<zoo::MaskedLanguageModelTask&>(*task);
    std::vector<int64_t> ids{mlm.vocab().cls_id()};
    for (auto id : mlm.vocab().encode(short_text)) ids.push_back(id);
    ids.push_back(mlm.vocab().sep_id());
    auto mean = mlm.encoder()->forward(torch::tensor(ids).view({1, -1})).sequence.mean(1)[0];
    CHECK(torch::allclose(one[0], mean, 1e-5, 1e-5));
  }
  // data.max_length may change for a loaded checkpoint; the short phase's divisor rule is training's.
  auto longer = zoo::test::run(zoo::test::zoo_bin() + " embed --checkpoint " + q(ckpt) + " --set data.max_length=136 '" +
                               short_text + "'");
  INFO(longer.output);
  CHECK(longer.code == 0);
  CHECK(torch::allclose(zoo::test::embedding_rows(longer.output), one, 1e-5, 1e-5));  // a short text: not cut either way
  auto images = zoo::test::run(zoo::test::zoo_bin() + " embed --checkpoint " + q(ckpt) + " --images x.png");
  CHECK(images.code == 2);
  CHECK_THAT(images.output, Contains("a bert_mlm model embeds texts, not images; drop --images"));

  std::ofstream(dir + "/pos.yaml") << "task: bert_pos\n" << common
                                   << "model: {pretrained: " + zoo::test::yaml_str(ckpt) + ", dropout: 0.0, attention_dropout: 0.0}\n"
                                      "data: {root: " + zoo::test::yaml_str(brown) + ", train_limit: 40, eval_limit: 300}\n"
                                      "optim: {lr: 0.002, warmup_steps: 10}\n";
  auto pos_cfg = zoo::Config::from_file(dir + "/pos.yaml", {"train.steps=60"});
  zoo::Trainer pos(pos_cfg, {dir + "/pos"});
  CHECK(check_encoder_from(pos, ckpt) > 20);  // it starts from the pretrained encoder
  auto p = pos.run();
  INFO("POS accuracy " << p["accuracy"]);
  CHECK(p["accuracy"] > 0.6);  // 12 tags; the most frequent, NOUN, is about a quarter
  // The fine-tuned checkpoint rebuilds itself without the pretrained file.
  std::filesystem::rename(ckpt, ckpt + ".moved");
  auto eval = zoo::test::run(zoo::test::zoo_bin() + " eval --checkpoint " + q(dir + "/pos/checkpoints/best.pt") +
                             " --set data.eval_limit=50");
  CHECK(eval.code == 0);
  CHECK_THAT(eval.output, Contains("\"accuracy\""));
  // zoo embed reads the fine-tuned encoder, which has moved away from the pretrained one.
  auto tuned = zoo::test::run(zoo::test::zoo_bin() + " embed --checkpoint " + q(dir + "/pos/checkpoints/best.pt") + " '" +
                              short_text + "'");
  INFO(tuned.output);
  REQUIRE(tuned.code == 0);
  auto tuned_rows = zoo::test::embedding_rows(tuned.output);
  REQUIRE(tuned_rows.defined());
  REQUIRE(tuned_rows.sizes() == torch::IntArrayRef({1, 128}));
  CHECK_FALSE(torch::allclose(tuned_rows, one, 1e-3, 1e-3));
  // A non-BERT checkpoint as model.pretrained is refused with its path.
  CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/pos.yaml", {"model.pretrained=" + dir + "/pos/checkpoints/best.pt"}),
                                 {dir + "/pos2"}),
                    Contains("not a pretrained BERT"));
}

TEST_CASE("pretraining with a short phase: the switch to data.max_length survives an interruption there",
          "[bert][resume]") {
  // 3 steps of 16-token examples, 16 per batch (the same tokens as 4 of 64), then 64 tokens.
  const auto dir = zoo::test::scratch("bert-short"), full = dir + "/full", split = dir + "/split";
  const auto brown = data_dir("brown");
  const auto cfg = [&] {
    auto yaml = dir + "/mlm.yaml";
    std::ofstream(yaml) << "task: bert_mlm\n"
                           "train: {device: cpu, threads: 2, seed: 3, batch_size: 4, steps: 6, log_every: 1, eval_every: 0,"
                           " checkpoint_every: 1000}\n"
                           "model: {size: tiny, dropout: 0.0, attention_dropout: 0.0}\n"
                           "data: {root: " + zoo::test::yaml_str(brown) + ", vocab_corpus: " + zoo::test::yaml_str(brown) + ", vocab_size: 500, max_length: 64,"
                           " short_length: 16, short_steps: 3, eval_limit: 20}\n";
    return zoo::Config::from_file(yaml);
  };
  {
    zoo::Trainer t(cfg(), {full});
    t.run();
    CHECK(t.task().examples_per_step() == 4);
  }
  {
    zoo::TrainerOptions o{split};
    o.stop_after = 3;  // the last short step; the next one builds the first long batch
    zoo::Trainer t(cfg(), o);
    t.run();
    CHECK(t.task().examples_per_step() == 16);  // 4 x 64 / 16: the short phase ran, and up to step 3
  }
  {
    zoo::TrainerOptions o{split};
    o.resume = true;
    zoo::Trainer t(cfg(), o);
    t.run();
    CHECK(t.task().examples_per_step() == 4);
  }
  auto a = zoo::test::train_losses(full), b = zoo::test::train_losses(split);
  REQUIRE(a.size() == 6);
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << a[i].first);
    CHECK(a[i].second == b[i].second);  // bit-identical on CPU with a fixed seed
  }
  // A short length that does not divide max_length is refused with its key; so is resuming a
  // run already past its short phase with more short steps.
  CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", {"data.short_length=24"}), {dir + "/bad"}),
                    Contains("data.short_length"));
  zoo::TrainerOptions more{split};
  more.resume = true;
  CHECK_THROWS_WITH(
      zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", {"data.short_steps=9", "train.steps=12"}), more).run(),
      Contains("data.short_steps"));

  // The BERT shape a checkpoint stores is checked before a model is built from it: a damaged
  // record would build one that fails inside LibTorch, or one with fewer layers than are stored.
  auto archive = zoo::read_checkpoint(zoo::list_step_checkpoints(full + "/checkpoints").back());
  torch::serialize::InputArchive stored;
  REQUIRE(archive.try_read("task", stored));
  torch::Tensor shape;
  REQUIRE(stored.try_read("bert_shape", shape));
  const auto vocab = zoo::read_string(stored, "vocab");
  auto make_with = [&](int64_t at, int64_t value) {  // the stored shape with shape[at] = value
    auto edited = shape.clone();
    edited[at] = value;
    torch::serialize::OutputArchive out;
    out.write("vocab", c10::IValue(vocab));
    out.write("bert_shape", edited);
    std::stringstream bytes;
    out.save_to(bytes);
    torch::serialize::InputArchive in;
    in.load_from(bytes);
    return zoo::make_task(cfg(), zoo::TaskContext{torch::kCPU, 0, 1, &in});
  };
  CHECK_NOTHROW(make_with(2, shape[2].item<int64_t>()));
  CHECK_THROWS_WITH(make_with(2, 0), Contains("the checkpoint's BERT shape is damaged (num_layers 0, outside 1..64)"));
  CHECK_THROWS_WITH(make_with(1, -128), Contains("(hidden_size -128, outside 1..4096)"));
  CHECK_THROWS_WITH(make_with(3, 3), Contains("(num_heads 3 does not divide hidden_size 128)"));
  CHECK_THROWS_WITH(make_with(0, shape[0].item<int64_t>() + 202), Contains(", but its vocabulary holds "));
}

TEST_CASE("continued pretraining (model.pretrained) starts from the checkpoint and keeps its shape on resume",
          "[bert][resume]") {
  const auto dir = zoo::test::scratch("bert-continue"), brown = data_dir("brown");
  std::ofstream(dir + "/mlm.yaml") << "task: bert_mlm\n"
                                      "train: {device: cpu, threads: 2, seed: 3, batch_size: 4, steps: 4, log_every: 1,"
                                      " eval_every: 0, checkpoint_every: 1000}\n"
                                      "model: {size: tiny, dropout: 0.0, attention_dropout: 0.0}\n"
                                      "data: {root: " + zoo::test::yaml_str(brown) + ", vocab_corpus: " + zoo::test::yaml_str(brown) + ", vocab_size: 500, max_length: 32,"
                                      " eval_limit: 20}\n";
  zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml"), {dir + "/first"}).run();
  const auto first = dir + "/first/checkpoints/best.pt";
  // The second phase: longer examples, and a model.size that the checkpoint's shape overrides.
  const std::vector<std::string> second{"model.pretrained=" + first, "model.size=mini", "data.max_length=128",
                                        "data.max_predictions=19"};
  {
    zoo::Config pcfg;
    auto from = zoo::load_task(first, {"train.device=cpu"}, &pcfg, /*runtime=*/false);
    auto before = from->model().named_parameters();
    zoo::Trainer t(zoo::Config::from_file(dir + "/mlm.yaml", second), {dir + "/full"});
    auto after = t.task().model().named_parameters();
    REQUIRE(after.size() == before.size());
    for (const auto& p : after) {
      INFO(p.key());
      CHECK(torch::equal(p.value(), before[p.key()]));  // every weight, the MLM and NSP heads included
    }
    t.run();
  }
  {
    zoo::TrainerOptions o{dir + "/split"};
    o.stop_after = 2;
    zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", second), o).run();
    o.stop_after.reset();
    o.resume = true;  // the run's own shape (tiny, from the checkpoint it continued), not model.size
    zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", second), o).run();
  }
  auto a = zoo::test::train_losses(dir + "/full"), b = zoo::test::train_losses(dir + "/split");
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("step " << a[i].first);
    CHECK(a[i].second == b[i].second);
  }
  // Longer examples than the checkpoint has positions, and a checkpoint of another task, are refused.
  auto longer = second;
  longer.push_back("data.max_length=1024");
  CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", longer), {dir + "/bad"}),
                    Contains("data.max_length: 1024 is longer than the model's 512 positions"));
  std::ofstream(dir + "/pos.yaml") << "task: bert_pos\n"
                                      "train: {device: cpu, threads: 2, steps: 1, batch_size: 4, eval_every: 0}\n"
                                      "model: {pretrained: " + zoo::test::yaml_str(first) + "}\n"
                                      "data: {root: " + zoo::test::yaml_str(brown) + ", train_limit: 5, eval_limit: 10}\n";
  zoo::Trainer(zoo::Config::from_file(dir + "/pos.yaml"), {dir + "/pos"}).run();
  {  // POS tags words, not whole examples: zoo eval --predictions says so and writes nothing
    auto r = zoo::test::run(zoo::test::zoo_bin() + " eval --checkpoint " + q(dir + "/pos/checkpoints/best.pt") +
                            " --predictions " + q(dir + "/pos.tsv"));
    CHECK(r.code == 2);
    CHECK_THAT(r.output, Contains("--predictions: this task writes no predictions"));
    CHECK(!std::filesystem::exists(dir + "/pos.tsv"));
  }
  CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", {"model.pretrained=" + dir + "/pos/checkpoints/best.pt"}),
                                 {dir + "/bad2"}),
                    Contains("not a pretrained BERT"));
}

TEST_CASE("spam detection from scratch with a vocabulary built from the training messages", "[bert][learn]") {
  auto dir = zoo::test::scratch("bert-spam");
  const auto spam = data_dir("spamassassin");
  std::ofstream(dir + "/spam.yaml")
      << "task: bert_spam\n"
         "train: {device: cpu, threads: 2, seed: 1, batch_size: 16, log_every: 10, eval_every: 0, checkpoint_every: 1000}\n"
         "model: {pretrained: '', size: tiny, dropout: 0.0, attention_dropout: 0.0}\n"
         "data: {root: " + zoo::test::yaml_str(spam) + ", vocab_corpus: " + zoo::test::yaml_str(spam) + ", vocab_size: 1000, max_length: 128, train_limit: 400, eval_limit: 200}\n"
         "optim: {lr: 0.001, warmup_steps: 10}\n";
  auto cfg = zoo::Config::from_file(dir + "/spam.yaml", {"train.steps=100"});
  zoo::Trainer t(cfg, {dir + "/run"});
  auto m = t.run();
  INFO("accuracy " << m.at("accuracy") << ", F1 " << m.at("f1"));
  CHECK(m.at("accuracy") > 0.75);  // about two messages in three are ham
  CHECK(m.at("f1") > 0.5);
  {  // zoo eval --predictions: one line per test message, which agree with the metrics it prints
    const auto ckpt = dir + "/run/checkpoints/best.pt", tsv = dir + "/predictions.tsv";
    auto r = zoo::test::run(zoo::test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --predictions " + q(tsv));
    REQUIRE(r.code == 0);
    auto out = r.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    const auto printed = nlohmann::json::parse(out.substr(out.rfind('\n') + 1));
    std::ifstream in(tsv);
    std::string line;
    std::getline(in, line);
    CHECK(line == "message\tlabel\tpredicted\tp_spam\ttokens");
    double rows = 0, right = 0, gold_spam = 0, caught = 0;
    std::set<std::string> names;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string name, label, predicted;
      double p = -1, tokens = 0;
      std::getline(fields, name, '\t'), std::getline(fields, label, '\t'), std::getline(fields, predicted, '\t');
      fields >> p >> tokens;
      INFO(line);
      CHECK((label == "spam" || label == "ham"));
      CHECK(predicted == (p > 0.5 ? "spam" : "ham"));
      CHECK((p >= 0 && p <= 1));
      CHECK((tokens >= 3 && tokens <= 128));
      CHECK((name.rfind("spam-", 0) == 0) == (label == "spam"));  // the id names its folder
      names.insert(name);
      rows += 1, right += label == predicted, gold_spam += label == "spam", caught += label == "spam" && predicted == "spam";
    }
    CHECK(rows == printed["messages"].get<double>());
    CHECK(names.size() == rows);
    CHECK(gold_spam == printed["spam"].get<double>());
    CHECK(right / rows == Approx(printed["accuracy"].get<double>()).epsilon(1e-9));
    CHECK(caught / gold_spam == Approx(printed["recall"].get<double>()).epsilon(1e-9));
    // A file that cannot be written, and a task that writes no predictions, exit 2 and say which.
    auto bad = zoo::test::run(zoo::test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --predictions " +
                              q(dir + "/no/such/p.tsv"));
    CHECK(bad.code == 2);
    CHECK_THAT(bad.output,
               Contains("--predictions " + dir + "/no/such/p.tsv: the folder " + dir + "/no/such does not exist"));
    // A message file whose name holds a tab would split its line: refused, naming it, nothing written.
    namespace fs = std::filesystem;
    const auto odd = dir + "/odd";
    fs::create_directories(odd + "/data/spam-1");
    fs::create_directories(odd + "/data/spam-2");
    for (const char* f : {"easy-ham-1", "easy-ham-2", "hard-ham-1"})
      fs::create_directory_symlink(spam + "/data/" + f, odd + "/data/" + f);
    const auto tests = zoo::load_spamassassin(spam, "test");
    const auto first_spam = std::find_if(tests.begin(), tests.end(), [](const auto& m) { return m.spam; });
    REQUIRE(first_spam != tests.end());
    fs::copy_file(spam + "/data/" + first_spam->id + ".txt", odd + "/data/spam-2/a\tb.txt");
    auto tab = zoo::test::run(zoo::test::zoo_bin() + " eval --checkpoint " + q(ckpt) + " --predictions " + q(dir + "/odd.tsv") +
                              " --set data.root=" + q(odd) + " --set data.eval_limit=0");
    CHECK(tab.code == 2);
    CHECK_THAT(tab.output, Contains(odd + "/data/spam-2/a\\x09b.txt: the file's name holds a tab or line break"));
    CHECK(!fs::exists(dir + "/odd.tsv"));
  }
  // A corpus that is neither Brown nor SpamAssassin is refused by its key.
  CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/spam.yaml", {"data.vocab_corpus=" + dir}), {dir + "/run2"}),
                    Contains("data.vocab_corpus: " + dir + " is neither"));
}

TEST_CASE("task-adaptive pretraining on the SpamAssassin training messages, and spam detection from it", "[bert][learn]") {
  auto dir = zoo::test::scratch("bert-tapt");
  const auto spam = data_dir("spamassassin");
  std::ofstream(dir + "/mlm.yaml")
      << "task: bert_mlm\n"
         "train: {device: cpu, threads: 2, seed: 1, batch_size: 16, log_every: 10, eval_every: 0, checkpoint_every: 1000}\n"
         "model: {size: tiny, dropout: 0.0, attention_dropout: 0.0}\n"
         "data: {root: " + zoo::test::yaml_str(spam) + ", vocab_corpus: " + zoo::test::yaml_str(spam) + ", vocab_size: 1000, max_length: 32, max_predictions: 5,"
         " message_tokens: 64}\n"
         "optim: {lr: 0.002, warmup_steps: 10}\n";
  auto m = zoo::Trainer(zoo::Config::from_file(dir + "/mlm.yaml", {"train.steps=40"}), {dir + "/mlm"}).run();
  INFO("MLM loss " << m.at("mlm_loss") << ", accuracy " << m.at("mlm_accuracy") << ", examples " << m.at("examples"));
  CHECK(m.at("mlm_loss") < 6.5);  // below ln 1000 = 6.9, a uniform guess
  // Each held-out test message is a document: 64 tokens of it make two or three examples of 32.
  const auto messages = static_cast<double>(zoo::load_spamassassin(spam, "test").size());
  CHECK(m.at("examples") >= messages);
  CHECK(m.at("examples") <= 4 * messages);
  const auto tapt = dir + "/mlm/checkpoints/best.pt";
  {  // twice the tokens of each message make about twice the examples (the run's vocabulary, not built again)
    zoo::Trainer longer(zoo::Config::from_file(dir + "/mlm.yaml", {"model.pretrained=" + tapt, "data.message_tokens=128"}),
                        {dir + "/longer"});
    const auto n = longer.task().evaluate("test")["examples"];
    CHECK(n > 1.6 * m.at("examples"));
    CHECK(n < 2.4 * m.at("examples"));
  }
  // Spam detection starts from the run, as from one on Brown.
  std::ofstream(dir + "/spam.yaml")
      << "task: bert_spam\n"
         "train: {device: cpu, threads: 2, seed: 1, steps: 5, batch_size: 8, eval_every: 0}\n"
         "model: {pretrained: " + zoo::test::yaml_str(tapt) + "}\n"
         "data: {root: " + zoo::test::yaml_str(spam) + ", max_length: 64, train_limit: 100, eval_limit: 50}\n";
  zoo::Trainer spam_run(zoo::Config::from_file(dir + "/spam.yaml"), {dir + "/spam"});
  CHECK(check_encoder_from(spam_run, tapt) > 20);
  auto s = spam_run.run();
  CHECK(s["messages"] == 50);
  {  // head + tail: the same model (the same seed) reads the end of the long messages too, so its loss moves
    auto head = zoo::Trainer(zoo::Config::from_file(dir + "/spam.yaml"), {dir + "/head"}).task().evaluate("test");
    auto both = zoo::Trainer(zoo::Config::from_file(dir + "/spam.yaml", {"data.tail_tokens=32"}), {dir + "/tail"})
                          .task()
                          .evaluate("test");
    CHECK(both["messages"] == 50);
    CHECK(std::abs(both["loss"] - head["loss"]) > 1e-6);
    CHECK_THROWS_WITH(zoo::Trainer(zoo::Config::from_file(dir + "/spam.yaml", {"data.tail_tokens=62"}), {dir + "/bad"}),
                      Contains("data.tail_tokens"));
  }
}
