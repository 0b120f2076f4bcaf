#!/usr/bin/env python3
"""Facts about zoo's CMUdict split (train/data/cmudict.cpp), read independently from the file:
the words per split (headwords spelled with A-Z and the apostrophe; FNV-1a of the word, 90/5/5),
the test words with a plural or possessive sibling in training (X beside XS or X'S, either way),
and how far a PER could move with the rule that picks among equally close references: the test
words' references differ in length by this many phones in all, against the phones of their
shortest references; and the training pairs that only stress tells apart.
    python3 bench/cmudict_split.py [data/cmudict]"""
import re
import sys

from pos_baseline import split_of  # FNV-1a of the key (train/data/split.h)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/cmudict"
    words = {}
    with open(f"{root}/data/dict.txt", encoding="latin-1") as f:
        for line in f:
            fields = line.split()
            if not fields or line.startswith(";;;"):
                continue
            word = fields[0].split("(")[0]
            if re.fullmatch(r"[A-Z']*", word) and word.strip("'"):
                prons = words.setdefault(word, [])
                if fields[1:] not in prons:
                    prons.append(fields[1:])
    split = {w: split_of(w, 5, 5) for w in words}  # 90/5/5
    counts = {s: sum(1 for w in words if split[w] == s) for s in ("train", "val", "test")}
    print(f"words: {len(words)}; train {counts['train']}, val {counts['val']}, test {counts['test']}")

    def in_train(w):
        return w in words and split[w] == "train"

    test = [w for w in words if split[w] == "test"]
    siblings = sum(1 for w in test if in_train(w + "S") or in_train(w + "'S") or
                   (w.endswith("'S") and in_train(w[:-2])) or (w.endswith("S") and in_train(w[:-1])))
    print(f"test words with a plural or possessive sibling in training: {siblings} of {len(test)}")
    train = [w for w in words if split[w] == "train"]
    plain = sum(len(words[w]) - len({tuple(re.sub(r"[012]$", "", p) for p in pron) for pron in words[w]}) for w in train)
    print(f"training pairs: {sum(len(words[w]) for w in train)}, of which {plain} repeat another of their word "
          "once stress marks are dropped (data.stress=false)")
    shortest = sum(min(len(p) for p in words[w]) for w in test)
    spread = sum(max(len(p) for p in words[w]) - min(len(p) for p in words[w]) for w in test)
    print(f"test references: {shortest} phones (each word's shortest), length spread {spread} "
          f"({100 * spread / shortest:.2f}% of them)")


if __name__ == "__main__":
    main()
