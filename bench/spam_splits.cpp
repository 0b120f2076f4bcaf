// The SpamAssassin split as zoo's loader makes it, for the Python anchors (bench/spam_baseline.py,
// bench/spam_unseen.py), which read the messages' text on their own but must score the same
// messages: one line per message, "<folder>/<file without .txt>\t<train|val|test>".
//     zoo_spam_splits [data/spamassassin] > splits.tsv
#include <cstdio>
#include <exception>
#include <string>

#include "train/data/spamassassin.h"

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    std::fprintf(stderr, "usage: zoo_spam_splits [ROOT]   (ROOT: data/spamassassin, from scripts/fetch-data spamassassin)\n");
    return 2;
  }
  try {
    for (const auto& m : zoo::load_spamassassin(argc == 2 ? argv[1] : "data/spamassassin", "all"))
      std::printf("%s\t%s\n", m.id.c_str(), m.split.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zoo_spam_splits: %s\n", e.what());
    return 2;
  }
  return std::fflush(stdout) == 0 && !std::ferror(stdout) ? 0 : 1;
}
