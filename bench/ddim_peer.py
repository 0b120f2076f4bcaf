"""DDIM-50 sampling in PyTorch Python (Song et al. 2020, Eq. 12 with eta = 0, linspace spacing,
x0 clipped and eps re-derived from it) with zoo's U-Net (unet_peer.py): the work of
bench.cpp's ddim, one batch per step."""
import math

import torch

import peer
import unet_peer

a = peer.args(default_batch=64)
unet = unet_peer.UNet()
unet.eval()
ab = unet_peer.alphas_cumprod.to(a.device)
ts = sorted({round(i * 999 / 49) for i in range(50)}, reverse=True)


@torch.no_grad()
def sample():
    x = torch.randn(a.batch, 1, 28, 28)
    for i, t in enumerate(ts):
        out = unet(x, torch.full((a.batch,), t, dtype=torch.long))
        a_t = ab[t].item()
        a_prev = ab[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        x0 = ((x - math.sqrt(1 - a_t) * out) / math.sqrt(a_t)).clamp(-1, 1)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x


peer.run(a, "ddim", sample, a.batch, "images sampled", list(unet.parameters()))
