#include "train/data/brown.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "train/config.h"
#include "train/data/split.h"

namespace fs = std::filesystem;

namespace zoo {

std::string brown_split(const std::string& document_id) {
  return split_by_hash(document_id, /*val_percent=*/10, /*test_percent=*/10);
}

std::vector<BrownDocument> load_brown(const std::string& root, const std::string& split) {
  if (split != "train" && split != "val" && split != "test" && split != "all")
    throw UsageError("brown split '" + split + "': expected train, val, test or all");
  const auto cats = (fs::path(root) / "cats.txt").string();
  if (fs::exists(cats) && !fs::is_regular_file(cats))
    throw UsageError("data.root: " + cats + " is not a regular file (a directory, pipe or device); delete it and run "
                     "scripts/fetch-data brown (or set data.root)");
  std::ifstream in(cats);
  if (!in) throw UsageError("data.root: " + cats + " is missing; run scripts/fetch-data brown (or set data.root)");
  std::vector<BrownDocument> docs;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    BrownDocument d;
    if (!(ls >> d.id >> d.genre)) continue;
    if (split != "all" && brown_split(d.id) != split) continue;
    docs.push_back(std::move(d));
  }
  std::sort(docs.begin(), docs.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (auto& d : docs) {
    const auto path = (fs::path(root) / d.id).string();
    std::error_code ec;  // the type first: opening a pipe of that name would wait for a writer
    std::ifstream f;
    if (fs::is_regular_file(path, ec)) f.open(path);
    if (!f.is_open() || !f)
      throw UsageError("data.root: " + path + " is missing or not a file; delete " + root +
                       " and run scripts/fetch-data brown");
    int64_t line_no = 0;
    while (std::getline(f, line)) {
      ++line_no;
      std::istringstream ls(line);
      TaggedSentence s;
      for (std::string tok; ls >> tok;) {
        const auto slash = tok.rfind('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == tok.size())
          throw UsageError(path + ":" + std::to_string(line_no) + ": '" + tok +
                           "' is not word/tag; delete " + root + " and run scripts/fetch-data brown");
        s.words.push_back(tok.substr(0, slash));
        s.tags.push_back(tok.substr(slash + 1));
      }
      if (!s.words.empty()) d.sentences.push_back(std::move(s));
    }
  }
  if (docs.empty())
    throw UsageError("data.root: " + cats + " lists no documents" +
                     (split == "all" ? "" : " of the " + split + " split (a document's id picks its split)") +
                     "; run scripts/fetch-data brown for the whole corpus");
  if (std::all_of(docs.begin(), docs.end(), [](const auto& d) { return d.sentences.empty(); }))
    throw UsageError("data.root: the " + split + " documents under " + root + " hold no tagged sentences; delete " +
                     root + " and run scripts/fetch-data brown");
  return docs;
}

const std::vector<std::string>& universal_tags() {
  static const std::vector<std::string> tags{"NOUN", "VERB", "ADJ", "ADV", "PRON", "DET",
                                             "ADP",  "NUM",  "CONJ", "PRT", ".",    "X"};
  return tags;
}

std::string universal_tag(const std::string& brown_tag) {
  std::string t = brown_tag;
  if (t.rfind("fw-", 0) == 0) return "X";
  if (t.find_first_not_of("'`().,:;-!?[]{}\"") == std::string::npos) return ".";
  t = t.substr(0, t.find('+'));  // a compound's first part
  for (bool changed = true; changed;) {  // -tl, -hl, -nc (in any order), then * and $
    changed = false;
    for (const char* suffix : {"-tl", "-hl", "-nc"}) {
      const std::string s(suffix);
      if (t.size() > s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0) t.resize(t.size() - s.size()), changed = true;
    }
  }
  while (!t.empty() && (t.back() == '*' || t.back() == '$')) t.pop_back();
  if (t.empty()) return "ADV";  // "*": not, n't
  if (t.find_first_not_of("'`().,:;-!?[]{}\"") == std::string::npos) return ".";
  static const std::map<std::string, std::string> base{
      {"nn", "NOUN"},  {"nns", "NOUN"}, {"np", "NOUN"},  {"nps", "NOUN"},  {"nr", "NOUN"},  {"nrs", "NOUN"},
      {"md", "VERB"},  {"pn", "PRON"},  {"pp", "PRON"},  {"ppl", "PRON"},  {"ppls", "PRON"}, {"ppo", "PRON"},
      {"pps", "PRON"}, {"ppss", "PRON"}, {"wp", "PRON"}, {"wpo", "PRON"},  {"wps", "PRON"}, {"jj", "ADJ"},
      {"jjr", "ADJ"},  {"jjs", "ADJ"},  {"jjt", "ADJ"},  {"od", "ADJ"},    {"ap", "ADJ"},   {"rb", "ADV"},
      {"rbr", "ADV"},  {"rbt", "ADV"},  {"rn", "ADV"},   {"ql", "ADV"},    {"qlp", "ADV"},  {"wql", "ADV"},
      {"wrb", "ADV"},  {"in", "ADP"},   {"cc", "CONJ"},  {"cs", "CONJ"},   {"at", "DET"},   {"abx", "DET"},
      {"dt", "DET"},   {"dti", "DET"},  {"dts", "DET"},  {"dtx", "DET"},   {"wdt", "DET"},  {"ex", "DET"},
      {"cd", "NUM"},   {"to", "PRT"},   {"rp", "PRT"},   {"abl", "PRT"},   {"abn", "PRT"},  {"uh", "X"},
      {"nil", "X"}};
  if (auto it = base.find(t); it != base.end()) return it->second;
  for (const char* verb : {"vb", "be", "do", "hv"})
    if (t.rfind(verb, 0) == 0) return "VERB";
  return "X";
}

}  // namespace zoo
