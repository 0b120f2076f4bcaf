#!/usr/bin/env python3
"""Logistic regression on a bag of words for spam detection on zoo's SpamAssassin split: the
anchor for the bert_spam figures in the README, on the same split (zoo's, by each message's
body, as build/bench/zoo_spam_splits prints it) with the text read independently, by
Python's email package: the subject and every text part, decoded, HTML tags dropped.
Features: the words (lower-cased runs of letters, digits and apostrophes, and "$" and "!")
seen in at least 2 training messages, as log(1 + count) * idf, each message's vector of
length 1. L2-regularized logistic regression, full batch, L-BFGS in torch; the strength
from {1e-3, 1e-4, ..., 1e-8} by validation F1. Prints validation and test figures.
    python3 bench/spam_baseline.py [data/spamassassin] [--words N] [--predictions FILE] [--splits-bin B]
--words N reads only the first N words of each message (the README's 300: about the 512 tokens
bert_spam reads). --predictions writes one line per test message in the format of `zoo eval
--predictions` (message, label, predicted, p_spam, words), to set beside a BERT run's."""
import argparse
import collections
import email
import email.header
import math
import os
import re
import sys

import torch

from spam_splits import zoo_splits  # zoo's split, from build/bench/zoo_spam_splits

FOLDERS = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
WORD = re.compile(r"[a-z0-9']+|[$!]")
TAG = re.compile(r"<[^>]*>")


def decoded(payload, charset):
    try:
        return payload.decode(charset or "latin-1", errors="replace")
    except LookupError:
        return payload.decode("latin-1", errors="replace")


def message_text(raw):
    msg = email.message_from_bytes(raw)
    subject = ""
    for part, charset in email.header.decode_header(msg.get("Subject", "") or ""):
        subject += decoded(part, charset) if isinstance(part, bytes) else part
    texts = [subject]
    for part in msg.walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        text = decoded(payload, part.get_content_charset())
        if part.get_content_subtype() == "html" or "<html" in text[:2000].lower():
            text = TAG.sub(" ", text)
        texts.append(text)
    return "\n".join(texts)


def load(root, splits, max_words=0):
    out = {"train": [], "val": [], "test": []}
    for folder in FOLDERS:
        d = os.path.join(root, "data", folder)
        for name in sorted(os.listdir(d)):
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(d, name), "rb") as f:
                words = WORD.findall(message_text(f.read()).lower())
            if max_words > 0:
                words = words[:max_words]
            out[splits[folder + "/" + name[:-4]]].append((collections.Counter(words), folder.startswith("spam"), folder + "/" + name[:-4], len(words)))
    return out


def features(rows, index, idf):
    ii, jj, vv = [], [], []
    for r, (counts, *_) in enumerate(rows):
        cols = [(index[w], math.log1p(c) * idf[index[w]]) for w, c in counts.items() if w in index]
        norm = math.sqrt(sum(v * v for _, v in cols)) or 1.0
        for j, v in cols:
            ii.append(r)
            jj.append(j)
            vv.append(v / norm)
    x = torch.sparse_coo_tensor([ii, jj], vv, (len(rows), len(index)), dtype=torch.float64).coalesce()
    y = torch.tensor([float(row[1]) for row in rows], dtype=torch.float64)
    return x, y


def fit(x, y, strength):
    w = torch.zeros(x.shape[1], 1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.sparse.mm(x, w).squeeze(1) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + strength * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def scores(x, y, w, b):
    pred = (torch.sparse.mm(x, w).squeeze(1) + b) > 0
    truth = y > 0.5
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    f1 = 2 * p * r / max(p + r, 1e-12)
    acc = float((pred == truth).double().mean())
    return f1, p, r, acc, tp, fp, fn


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", nargs="?", default="data/spamassassin")
    ap.add_argument("--words", type=int, default=0, help="read only the first N words of a message (0: all)")
    ap.add_argument("--predictions", help="write each test message's prediction to this file")
    ap.add_argument("--splits-bin", default="build/bench/zoo_spam_splits", help="zoo's split lister")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.root, "data")):
        sys.exit(f"{args.root}: no SpamAssassin corpus here; run scripts/fetch-data spamassassin")
    torch.manual_seed(0)
    data = load(args.root, zoo_splits(args.root, args.splits_bin), args.words)
    df = collections.Counter()
    for counts, *_ in data["train"]:
        df.update(counts.keys())
    words = sorted(w for w, n in df.items() if n >= 2)
    index = {w: i for i, w in enumerate(words)}
    n = len(data["train"])
    idf = [math.log((1 + n) / (1 + df[w])) + 1 for w in words]
    xs = {k: features(v, index, idf) for k, v in data.items()}
    print(f"{len(words)} words; train/val/test {len(data['train'])}/{len(data['val'])}/{len(data['test'])} messages")
    best = None
    for strength in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        w, b = fit(*xs["train"], strength)
        f1 = scores(*xs["val"], w, b)[0]
        print(f"L2 {strength:g}: val F1 {100 * f1:.2f}%")
        if best is None or f1 > best[0]:
            best = (f1, strength, w, b)
    f1, strength, w, b = best
    t = scores(*xs["test"], best[2], best[3])
    print(f"chosen L2 {strength:g} (val F1 {100 * f1:.2f}%): test F1 {100 * t[0]:.2f}% (P {100 * t[1]:.1f}%, "
          f"R {100 * t[2]:.1f}%, acc. {100 * t[3]:.1f}%; {t[4]} spam caught, {t[6]} missed, {t[5]} ham flagged)")
    if args.predictions:
        x, _ = xs["test"]
        p = torch.sigmoid(torch.sparse.mm(x, w).squeeze(1) + b)
        with open(args.predictions, "w") as f:
            f.write("message\tlabel\tpredicted\tp_spam\twords\n")
            for (_, spam, name, n_words), q in zip(data["test"], p.tolist()):
                f.write(f"{name}\t{'spam' if spam else 'ham'}\t{'spam' if q > 0.5 else 'ham'}\t{q:.6f}\t{n_words}\n")


if __name__ == "__main__":
    main()
