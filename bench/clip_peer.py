"""CLIP training step in PyTorch Python: torchvision's VisionTransformer as the image encoder
(1-channel 28x28, patch 4, width 128, depth 4, 4 heads, MLP 256, no head), a text encoder of 3
pre-norm torch.nn.TransformerEncoderLayer blocks (width 128, 4 heads, MLP 256, GELU) under a
causal mask pooled at the end-of-text token, linear projections to 128, a clamped logit scale
and the symmetric loss: the step of bench.cpp's clip."""
import math

import torch
import torchvision

import peer

a = peer.args(default_batch=128)
V, T, D = 512, 12, 128


class Clip(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = torchvision.models.VisionTransformer(image_size=28, patch_size=4, num_layers=4, num_heads=4,
                                                           hidden_dim=D, mlp_dim=256, dropout=0.0)
        self.visual.conv_proj = torch.nn.Conv2d(1, D, kernel_size=4, stride=4)
        self.visual.heads = torch.nn.Identity()
        self.tok = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Parameter(torch.randn(24, D) * 0.01)
        layer = torch.nn.TransformerEncoderLayer(D, 4, 256, dropout=0.0, activation="gelu", batch_first=True,
                                                 norm_first=True, layer_norm_eps=1e-6)
        self.text = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        self.ln = torch.nn.LayerNorm(D)
        self.vproj = torch.nn.Linear(D, D, bias=False)
        self.tproj = torch.nn.Linear(D, D, bias=False)
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x, tokens):
        img = torch.nn.functional.normalize(self.vproj(self.visual(x)), dim=-1)
        mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.size(1))
        h = self.ln(self.text(self.tok(tokens) + self.pos[: tokens.size(1)], mask=mask))
        eot = tokens.eq(3).long().argmax(1)
        txt = torch.nn.functional.normalize(self.tproj(h[torch.arange(tokens.size(0)), eot]), dim=-1)
        return self.logit_scale.exp().clamp(max=100) * img @ txt.t()


m = Clip()
m.train()
params = list(m.parameters())
update = peer.optimizer_step(torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05), params)
x = torch.rand(a.batch, 1, 28, 28)
tokens = torch.randint(5, V, (a.batch, T))
tokens[:, 0], tokens[:, -1] = 2, 3
labels = torch.arange(a.batch)


def step():
    logits = m(x, tokens)
    update((torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels)) / 2)


peer.run(a, "clip", step, a.batch, "images", params)
