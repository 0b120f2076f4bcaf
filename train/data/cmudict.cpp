#include "train/data/cmudict.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "train/config.h"
#include "train/data/split.h"

namespace fs = std::filesystem;

namespace zoo {

const std::vector<std::string>& arpabet_phones() {
  static const std::vector<std::string> phones{
      "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",  // vowels
      "B",  "CH", "D",  "DH", "F",  "G",  "HH", "JH", "K",  "L",  "M",  "N",  "NG", "P",  "R",
      "S",  "SH", "T",  "TH", "V",  "W",  "Y",  "Z",  "ZH"};
  return phones;
}

bool is_arpabet_vowel(const std::string& phone) {
  const auto& p = arpabet_phones();
  auto it = std::find(p.begin(), p.begin() + 15, phone);
  return it != p.begin() + 15;
}

std::string strip_stress(const std::string& phone) {
  if (!phone.empty() && phone.back() >= '0' && phone.back() <= '2') return phone.substr(0, phone.size() - 1);
  return phone;
}

bool is_g2p_word(const std::string& word) {
  return word.find_first_not_of('\'') != std::string::npos &&  // at least one letter
         std::all_of(word.begin(), word.end(), [](char c) { return (c >= 'A' && c <= 'Z') || c == '\''; });
}

std::string cmudict_split(const std::string& word) { return split_by_hash(word, /*val_percent=*/5, /*test_percent=*/5); }

std::vector<G2PEntry> load_cmudict(const std::string& root, const std::string& split) {
  if (split != "train" && split != "val" && split != "test" && split != "all")
    throw UsageError("cmudict split '" + split + "': expected train, val, test or all");
  const auto path = (fs::path(root) / "data" / "dict.txt").string();
  if (fs::exists(path) && !fs::is_regular_file(path))
    throw UsageError("data.root: " + path + " is not a regular file (a directory, pipe or device); delete it and run "
                     "scripts/fetch-data cmudict (or set data.root)");
  std::ifstream in(path);
  if (!in) throw UsageError("data.root: " + path + " is missing; run scripts/fetch-data cmudict (or set data.root)");
  std::vector<G2PEntry> out;
  std::unordered_map<std::string, size_t> index;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line.rfind(";;;", 0) == 0) continue;
    std::istringstream ls(line);
    std::string head, phone;
    ls >> head;
    std::vector<std::string> pron;
    while (ls >> phone) {
      if (phone == "#") break;  // a trailing comment
      const auto base = strip_stress(phone);
      const auto& all = arpabet_phones();
      if (std::find(all.begin(), all.end(), base) == all.end() || (is_arpabet_vowel(base) == (base == phone)))
        throw UsageError(path + ":" + std::to_string(line_no) + ": '" + phone +
                         "' is not an ARPAbet phone; the file is not CMUdict 0.7b (run scripts/fetch-data cmudict)");
      pron.push_back(phone);
    }
    if (pron.empty())
      throw UsageError(path + ":" + std::to_string(line_no) + ": expected 'WORD  PHONES...'; the file is damaged "
                       "(delete data/cmudict and run scripts/fetch-data cmudict)");
    auto word = head.substr(0, head.find('('));  // "WORD(1)" -> "WORD"
    if (!is_g2p_word(word)) continue;
    if (word.size() > kCmudictMaxLetters || pron.size() > kCmudictMaxPhones)
      throw UsageError(path + ":" + std::to_string(line_no) + ": " + std::to_string(word.size()) + " letters and " +
                       std::to_string(pron.size()) + " phones; at most " + std::to_string(kCmudictMaxLetters) +
                       " of each fit (delete data/cmudict and run scripts/fetch-data cmudict)");
    if (split != "all" && cmudict_split(word) != split) continue;
    auto it = index.find(word);
    if (it == index.end()) {
      index.emplace(word, out.size());
      out.push_back({word, {pron}});
    } else if (std::find(out[it->second].pronunciations.begin(), out[it->second].pronunciations.end(), pron) ==
               out[it->second].pronunciations.end()) {
      out[it->second].pronunciations.push_back(pron);
    }
  }
  if (out.empty())
    throw UsageError("data.root: " + path + " holds no words" + (split == "all" ? "" : " of the " + split + " split") +
                     "; run scripts/fetch-data cmudict");
  return out;
}

}  // namespace zoo
