"""Transformer G2P training step in PyTorch Python: torch.nn.Transformer at zoo's sizes
(d_model 256, 4 heads, feed-forward 512, 3 + 3 post-norm layers, dropout 0.1) with embeddings
scaled by sqrt(d), sinusoidal positions, the output tied to the target embedding, label
smoothing 0.1 and Adam(0.9, 0.98): the step of bench.cpp's transformer. nn.Transformer adds
a final layer norm to its encoder and decoder (1,024 parameters zoo's post-norm model lacks)."""
import math

import torch

import peer

a = peer.args(default_batch=256)
SRC, TGT, S, T, D = 31, 73, 9, 10, 256


class G2P(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.src = torch.nn.Embedding(SRC, D)
        self.tgt = torch.nn.Embedding(TGT, D)
        self.core = torch.nn.Transformer(d_model=D, nhead=4, num_encoder_layers=3, num_decoder_layers=3,
                                         dim_feedforward=512, dropout=0.1, batch_first=True)
        self.bias = torch.nn.Parameter(torch.zeros(TGT))
        pos = torch.arange(64).unsqueeze(1) * torch.exp(torch.arange(0, D, 2) * (-math.log(10000.0) / D))
        pe = torch.zeros(64, D)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos), torch.cos(pos)
        self.register_buffer("pe", pe)
        self.drop = torch.nn.Dropout(0.1)

    def embed(self, table, ids):
        return self.drop(table(ids) * math.sqrt(D) + self.pe[: ids.size(1)])

    def forward(self, src, tgt):
        mask = self.core.generate_square_subsequent_mask(tgt.size(1))
        h = self.core(self.embed(self.src, src), self.embed(self.tgt, tgt), tgt_mask=mask,
                      src_key_padding_mask=src.eq(0), memory_key_padding_mask=src.eq(0))
        return torch.nn.functional.linear(h, self.tgt.weight, self.bias)


m = G2P()
m.train()
params = list(m.parameters())
update = peer.optimizer_step(torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9), params)
src = torch.randint(4, SRC, (a.batch, S))
tgt = torch.randint(4, TGT, (a.batch, T))


def step():
    logits = m(src, tgt[:, :-1])
    update(torch.nn.functional.cross_entropy(logits.reshape(-1, TGT), tgt[:, 1:].reshape(-1), label_smoothing=0.1,
                                             ignore_index=0))


peer.run(a, "transformer", step, a.batch * (S + T - 1), "tokens", params)
