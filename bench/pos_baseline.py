#!/usr/bin/env python3
"""The most-frequent-tag baseline for POS tagging on zoo's Brown split: each word (lower-cased)
gets the tag it has most often in the training documents, an unseen word NOUN. A reference for
the bert_pos figures in the README, on the same split (FNV-1a of the document id, 80/10/10) and
the same universal mapping as train/data/brown.cpp, written again here independently.
    python3 bench/pos_baseline.py [data/brown]"""
import collections
import sys

PUNCT = set("'`().,:;-!?[]{}\"")
BASE = {
    "nn": "NOUN", "nns": "NOUN", "np": "NOUN", "nps": "NOUN", "nr": "NOUN", "nrs": "NOUN", "md": "VERB",
    "pn": "PRON", "pp": "PRON", "ppl": "PRON", "ppls": "PRON", "ppo": "PRON", "pps": "PRON", "ppss": "PRON",
    "wp": "PRON", "wpo": "PRON", "wps": "PRON", "jj": "ADJ", "jjr": "ADJ", "jjs": "ADJ", "jjt": "ADJ",
    "od": "ADJ", "ap": "ADJ", "rb": "ADV", "rbr": "ADV", "rbt": "ADV", "rn": "ADV", "ql": "ADV",
    "qlp": "ADV", "wql": "ADV", "wrb": "ADV", "in": "ADP", "cc": "CONJ", "cs": "CONJ", "at": "DET",
    "abx": "DET", "dt": "DET", "dti": "DET", "dts": "DET", "dtx": "DET", "wdt": "DET", "ex": "DET",
    "cd": "NUM", "to": "PRT", "rp": "PRT", "abl": "PRT", "abn": "PRT", "uh": "X", "nil": "X",
}


def split_of(key, val_percent=10, test_percent=10):
    """train/data/split.h's split_by_hash: FNV-1a of the key, the top buckets test, then val."""
    h = 14695981039346656037
    for c in key.encode():
        h = ((h ^ c) * 1099511628211) % (1 << 64)
    bucket = h % 100
    return "test" if bucket >= 100 - test_percent else "val" if bucket >= 100 - test_percent - val_percent else "train"


def universal(tag):
    if tag.startswith("fw-"):
        return "X"
    if all(c in PUNCT for c in tag):
        return "."
    tag = tag.split("+")[0]
    changed = True
    while changed:
        changed = False
        for suffix in ("-tl", "-hl", "-nc"):
            if len(tag) > len(suffix) and tag.endswith(suffix):
                tag, changed = tag[: -len(suffix)], True
    tag = tag.rstrip("*$")
    if not tag:
        return "ADV"
    if all(c in PUNCT for c in tag):
        return "."
    if tag in BASE:
        return BASE[tag]
    return "VERB" if tag.startswith(("vb", "be", "do", "hv")) else "X"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/brown"
    words = {"train": [], "val": [], "test": []}
    for line in open(f"{root}/cats.txt"):
        fields = line.split()
        if len(fields) < 2:
            continue
        for text in open(f"{root}/{fields[0]}"):
            for tok in text.split():
                i = tok.rfind("/")
                words[split_of(fields[0])].append((tok[:i].lower(), universal(tok[i + 1:])))
    counts = collections.defaultdict(collections.Counter)
    for w, t in words["train"]:
        counts[w][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    for split in ("val", "test"):
        right = sum(best.get(w, "NOUN") == t for w, t in words[split])
        print(f"{split}: {len(words[split])} words, most-frequent-tag accuracy {right / len(words[split]):.4f}")


if __name__ == "__main__":
    main()
