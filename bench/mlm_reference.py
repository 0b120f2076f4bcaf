#!/usr/bin/env python3
"""An independent masked-LM reference on zoo's Brown training documents, in PyTorch Python: is
the slow start of `configs/bert_mlm.yaml` zoo's or the recipe's? BERT-tiny's shape (2 post-norm
layers of width 128, 2 heads, GELU, tied decoder), a word-level vocabulary (the 8,187 most
frequent lower-cased words + 5 specials), 128-token windows of consecutive text, masked LM only
(15%: 80% [MASK], 10% random, 10% kept), no dropout, AdamW lr 1e-3 after 300 warmup steps,
batches of 32, 2 threads. Prints the training masked-LM accuracy over each 125 steps.
    python3 bench/mlm_reference.py [steps=750] [data/brown]"""
import collections
import random
import sys
import time

import torch
import torch.nn.functional as F

from pos_baseline import split_of

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 750
ROOT = sys.argv[2] if len(sys.argv) > 2 else "data/brown"
H, T, B, V = 128, 128, 32, 8192
PAD, UNK, CLS, SEP, MASK = range(5)
torch.set_num_threads(2)
torch.manual_seed(0)
random.seed(0)

docs = []
for line in open(f"{ROOT}/cats.txt"):
    fields = line.split()
    if len(fields) < 2 or split_of(fields[0]) != "train":
        continue
    docs.append([t[: t.rfind("/")].lower() for text in open(f"{ROOT}/{fields[0]}") for t in text.split()])
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
        layer = torch.nn.TransformerEncoderLayer(H, 2, 4 * H, 0.0, activation="gelu", batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.transform, self.transform_ln = torch.nn.Linear(H, H), torch.nn.LayerNorm(H)
        self.bias = torch.nn.Parameter(torch.zeros(V))
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids, picked):
        h = self.encoder(self.ln(self.word(ids) + self.pos.weight[None, : ids.size(1)]))
        return self.transform_ln(F.gelu(self.transform(h[picked]))) @ self.word.weight.t() + self.bias


model = MaskedLM()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 300))
start, right = time.time(), []
for step in range(1, STEPS + 1):
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
