"""BERT-mini pretraining step in PyTorch Python: word + position + segment embeddings with
layer norm, 4 post-norm torch.nn.TransformerEncoderLayer blocks (width 256, 4 heads,
feed-forward 1024, GELU, eps 1e-12), a tanh pooler, the masked-LM head (dense, GELU, layer
norm, decoder tied to the word embeddings) and the NSP head: the step of bench.cpp's bert."""
import torch

import peer

a = peer.args(default_batch=32)
V, L, H, PICKS = 8192, 128, 256, 19


class Bert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word = torch.nn.Embedding(V, H)
        self.pos = torch.nn.Embedding(512, H)
        self.segment = torch.nn.Embedding(2, H)
        self.ln = torch.nn.LayerNorm(H, eps=1e-12)
        self.drop = torch.nn.Dropout(0.1)
        layer = torch.nn.TransformerEncoderLayer(H, 4, 4 * H, dropout=0.1, activation="gelu", layer_norm_eps=1e-12,
                                                 batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.pooler = torch.nn.Linear(H, H)
        self.transform = torch.nn.Linear(H, H)
        self.transform_ln = torch.nn.LayerNorm(H, eps=1e-12)
        self.mlm_bias = torch.nn.Parameter(torch.zeros(V))
        self.nsp = torch.nn.Linear(H, 2)

    def forward(self, ids, types, attention, positions):
        x = self.word(ids) + self.pos(torch.arange(ids.size(1))) + self.segment(types)
        h = self.encoder(self.drop(self.ln(x)), src_key_padding_mask=attention.eq(0))
        picked = h[positions[:, 0], positions[:, 1]]
        mlm = torch.nn.functional.linear(self.transform_ln(torch.nn.functional.gelu(self.transform(picked))),
                                         self.word.weight, self.mlm_bias)
        return mlm, self.nsp(torch.tanh(self.pooler(h[:, 0])))


m = Bert()
m.train()
params = list(m.parameters())
update = peer.optimizer_step(torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01), params)
ids = torch.randint(5, V, (a.batch, L))
types = torch.cat([torch.zeros(a.batch, L // 2, dtype=torch.long), torch.ones(a.batch, L // 2, dtype=torch.long)], 1)
attention = torch.ones(a.batch, L, dtype=torch.long)
positions = torch.stack([torch.arange(a.batch).repeat_interleave(PICKS), torch.randint(1, L - 1, (a.batch * PICKS,))], 1)
targets = torch.randint(5, V, (a.batch * PICKS,))
nsp = torch.randint(0, 2, (a.batch,))


def step():
    mlm, ns = m(ids, types, attention, positions)
    update(torch.nn.functional.cross_entropy(mlm, targets) + torch.nn.functional.cross_entropy(ns, nsp))


peer.run(a, "bert", step, a.batch * L, "tokens", params)
