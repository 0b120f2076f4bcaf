#!/usr/bin/env python3
"""Spam F1 on the test messages that training did not already hold. Till 2026-12-05 zoo's
SpamAssassin split keyed on the MD5 in each file's name, a digest of the whole file, headers
included, so a message delivered twice (another Date, another Message-Id) could land in two
splits: 23 test messages had a training message's body. It now keys on the body's text
(train/data/spamassassin.h). This reads the raw files on its own, takes each one's split from
zoo (build/bench/zoo_spam_splits), finds the test messages whose body (the bytes after the
header's blank line) is byte for byte that of a training message, and those whose subject is
the same too (the whole input a model reads), and scores each predictions file three ways:
every test message, those without a training twin by body, those without one by subject and
body. With --md5-split it splits as zoo did before (the counts above).
    python3 bench/spam_unseen.py [--root data/spamassassin] [--md5-split] [PREDICTIONS]...
PREDICTIONS: files of `zoo eval --split test --predictions FILE` or of
`python3 bench/spam_baseline.py --predictions FILE` (message, label, predicted, ...)."""
import argparse
import os
import re
import sys

from pos_baseline import split_of  # FNV-1a of the key, 80/10/10 (train/data/split.h)
from spam_splits import zoo_splits

FOLDERS = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
SUBJECT = re.compile(rb"^subject:(.*)$", re.IGNORECASE | re.MULTILINE)


def parts(raw):
    """(subject, body) of a raw message: the Subject header's value and the bytes after the header."""
    raw = raw.replace(b"\r\n", b"\n")
    end = raw.find(b"\n\n")
    header, body = (raw, b"") if end < 0 else (raw[:end], raw[end + 2:])
    m = SUBJECT.search(header)
    return (m.group(1).strip() if m else b""), body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="data/spamassassin")
    ap.add_argument("--md5-split", action="store_true", help="split by the MD5 in the file name, as zoo did till 2026-12-05")
    ap.add_argument("--splits-bin", default="build/bench/zoo_spam_splits", help="zoo's split lister")
    ap.add_argument("predictions", nargs="*")
    args = ap.parse_args()
    data = os.path.join(args.root, "data")
    if not os.path.isdir(data):
        sys.exit(f"{data}: missing; run scripts/fetch-data spamassassin (or give --root)")
    splits = None if args.md5_split else zoo_splits(args.root, args.splits_bin)
    train_bodies, train_inputs, test_parts = set(), set(), {}
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(data, folder))):
            if not name.endswith(".txt"):
                continue
            split = split_of(name[name.find(".") + 1:-4]) if splits is None else splits[f"{folder}/{name[:-4]}"]
            if split not in ("train", "test"):
                continue
            with open(os.path.join(data, folder, name), "rb") as f:
                subject, body = parts(f.read())
            if split == "train":
                train_bodies.add(body)
                train_inputs.add((subject, body))
            else:
                test_parts[f"{folder}/{name[:-4]}"] = (subject, body)
    test = {k: (body in train_bodies, (subject, body) in train_inputs) for k, (subject, body) in test_parts.items()}
    twins_body = sum(b for b, _ in test.values())
    twins_input = sum(i for _, i in test.values())
    print(f"{len(test)} test messages; {twins_body} with a training message's body, {twins_input} with its subject too")
    for path in args.predictions:
        rows = {}
        with open(path) as f:
            header = f.readline().rstrip("\n").split("\t")
            col = {c: i for i, c in enumerate(header)}
            for line in f:
                r = line.rstrip("\n").split("\t")
                rows[r[col["message"]]] = (r[col["label"]] == "spam", r[col["predicted"]] == "spam")
        missing = set(test) - set(rows)
        if missing:
            sys.exit(f"{path}: no prediction for {len(missing)} test messages, e.g. {sorted(missing)[0]}; "
                     "give a file of `zoo eval --split test --predictions FILE`")
        print(path)
        for title, keep in [("all", lambda k: True),
                            ("no body twin in training", lambda k: not test[k][0]),
                            ("no subject+body twin", lambda k: not test[k][1])]:
            tp = fp = fn = n = 0
            for k in test:
                if not keep(k):
                    continue
                y, p = rows[k]
                tp += p and y
                fp += p and not y
                fn += y and not p
                n += 1
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            print(f"  {title:26s} {n:4d} messages ({tp + fn} spam): F1 {100 * f1:.2f}%  "
                  f"(caught {tp}, missed {fn}, ham flagged {fp})")


if __name__ == "__main__":
    main()
