#!/usr/bin/env python3
"""An independent masked-LM reference on zoo's Brown training documents, in PyTorch Python: is
the slow start of `configs/bert_mlm.yaml` zoo's or the recipe's? BERT-tiny's shape (2 post-norm
layers of width 128, 2 heads, GELU, tied decoder), a word-level vocabulary (the 8,187 most
frequent lower-cased words + 5 specials), 128-token windows of consecutive text, masked LM only
(15%: 80% [MASK], 10% random, 10% kept), no dropout, AdamW lr 1e-3 after 300 warmup steps,
batches of 32, 2 threads. Prints the training masked-LM accuracy over each 125 steps. The options
change one thing at a time, to test what might end the plateau at the start of masked-LM training;
at 128 tokens none did, and --length 16 --batch 256 (the same tokens per step) ended it within
1,000 steps, which is why configs/bert_mlm.yaml starts with a 16-token phase.
--ngram prints instead what counts of the training documents predict for 15% of the words of the
validation documents: the most frequent word, the word most often after the left neighbour, and
the word most often between the two neighbours: what "using the neighbours" is worth on Brown.
    python3 bench/mlm_reference.py [--steps 750] [--root data/brown] [--norm-first] [--lr 1e-3]
        [--warmup 300] [--init 0.02] [--batch 32] [--length 128] [--threads 2] [--ngram]"""
import argparse
import collections
import random
import time

import torch
import torch.nn.functional as F

from pos_baseline import split_of

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=750)
ap.add_argument("--root", default="data/brown")
ap.add_argument("--norm-first", action="store_true", help="pre-norm layers instead of BERT's post-norm")
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--warmup", type=int, default=300)
ap.add_argument("--init", type=float, default=0.02, help="std of the normal init of every matrix")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--length", type=int, default=128, help="tokens per window, [CLS] and [SEP] included")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--ngram", action="store_true", help="print the count baselines on validation and stop")
a = ap.parse_args()
H, T, B, V = 128, a.length, a.batch, 8192
PAD, UNK, CLS, SEP, MASK = range(5)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
random.seed(0)


def documents(split):
    out = []
    for line in open(f"{a.root}/cats.txt"):
        fields = line.split()
        if len(fields) == 2 and split_of(fields[0]) == split:
            out.append([t[: t.rfind("/")].lower() for text in open(f"{a.root}/{fields[0]}") for t in text.split()])
    return out


docs = documents("train")
if a.ngram:
    unigram = collections.Counter(w for d in docs for w in d)
    after, between = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for d in docs:
        for i in range(1, len(d) - 1):
            after[d[i - 1]][d[i]] += 1
            between[(d[i - 1], d[i + 1])][d[i]] += 1
    top = unigram.most_common(1)[0][0]
    n = right_top = right_after = right_between = 0
    for d in documents("val"):
        for i in range(1, len(d) - 1):
            if random.random() >= 0.15:
                continue
            guess_after = after[d[i - 1]].most_common(1)[0][0] if d[i - 1] in after else top
            guess_between = between[(d[i - 1], d[i + 1])].most_common(1)[0][0] if (d[i - 1], d[i + 1]) in between else guess_after
            n += 1
            right_top, right_after, right_between = (right_top + (d[i] == top), right_after + (d[i] == guess_after),
                                                     right_between + (d[i] == guess_between))
    print(f"{n} masked words of the validation documents, predicted from the training documents' counts: "
          f"the most frequent word {right_top / n:.4f}, after the left neighbour {right_after / n:.4f}, "
          f"between both neighbours {right_between / n:.4f}")
    raise SystemExit
counts = collections.Counter(w for d in docs for w in d)
index = {w: i + 5 for i, (w, _) in enumerate(counts.most_common(V - 5))}
windows = []
for d in docs:
    ids = [index.get(w, UNK) for w in d]
    windows += [[CLS] + ids[i : i + T - 2] + [SEP] for i in range(0, len(ids) - (T - 2) + 1, T - 2)]
print(f"{len(windows)} windows of {T} tokens from {len(docs)} training documents")


class MaskedLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word, self.pos, self.ln = torch.nn.Embedding(V, H), torch.nn.Embedding(T, H), torch.nn.LayerNorm(H)
        layer = torch.nn.TransformerEncoderLayer(H, 2, 4 * H, 0.0, activation="gelu", batch_first=True,
                                                   norm_first=a.norm_first)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.transform, self.transform_ln = torch.nn.Linear(H, H), torch.nn.LayerNorm(H)
        self.bias = torch.nn.Parameter(torch.zeros(V))
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, 0.0, a.init)

    def forward(self, ids, picked):
        h = self.encoder(self.ln(self.word(ids) + self.pos.weight[None, : ids.size(1)]))
        return self.transform_ln(F.gelu(self.transform(h[picked]))) @ self.word.weight.t() + self.bias


model = MaskedLM()
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup))
start, right = time.time(), []
for step in range(1, a.steps + 1):
    ids = torch.tensor(random.sample(windows, B))
    picked = (torch.rand(ids.shape) < 0.15) & (ids > MASK)
    r, inp = torch.rand(ids.shape), ids.clone()
    inp[picked & (r < 0.8)] = MASK
    swap = picked & (r >= 0.8) & (r < 0.9)
    inp[swap] = torch.randint(5, V, (int(swap.sum()),))
    logits, target = model(inp, picked), ids[picked]
    loss = F.cross_entropy(logits, target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    right.append((logits.argmax(-1) == target).float().mean().item())
    if step % 125 == 0:
        print(f"step {step}: loss {loss.item():.3f}, masked-LM accuracy over the last 125 steps "
              f"{sum(right[-125:]) / 125:.4f} ({time.time() - start:.0f} s)", flush=True)
