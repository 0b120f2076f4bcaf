"""zoo's DDPM U-Net (models/unet.cpp) and linear noise schedule written in PyTorch Python, for
the ddpm and ddim peers: base 32 channels, multipliers 1, 2, 2 (28 -> 14 -> 7), 2 residual
blocks per level with group norm, SiLU, dropout 0.1 and a per-channel time embedding,
self-attention (4 heads) at 7x7 and in the middle, skip connections, nearest upsampling."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_norm(c):
    return nn.GroupNorm(min(8, c), c)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], 1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, dropout):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2, self.dropout, self.conv2 = group_norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.norm, self.attn = group_norm(c), nn.MultiheadAttention(c, heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        return x + self.attn(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    def __init__(self, base=32, mults=(1, 2, 2), blocks=2, attn_sides=(7,), dropout=0.1, heads=4, side=28):
        super().__init__()
        tdim = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(1, base, 3, padding=1)
        self.down, self.up, self.down_plan, self.up_plan = nn.ModuleList(), nn.ModuleList(), [], []
        skips, ch = [base], base
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(ResBlock(ch, base * m, tdim, dropout)); self.down_plan.append("res"); ch = base * m
                if side in attn_sides:
                    self.down.append(Attention(ch, heads)); self.down_plan.append("attn")
                skips.append(ch)
            if i + 1 < len(mults):
                self.down.append(nn.Conv2d(ch, ch, 3, 2, 1)); self.down_plan.append("down"); skips.append(ch); side //= 2
        self.mid1, self.mid_attn, self.mid2 = ResBlock(ch, ch, tdim, dropout), Attention(ch, heads), ResBlock(ch, ch, tdim, dropout)
        for i in reversed(range(len(mults))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), base * mults[i], tdim, dropout)); self.up_plan.append("res")
                ch = base * mults[i]
                if side in attn_sides:
                    self.up.append(Attention(ch, heads)); self.up_plan.append("attn")
            if i > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1)); self.up_plan.append("up"); side *= 2
        self.norm_out, self.conv_out = group_norm(ch), nn.Conv2d(ch, 1, 3, padding=1)

    def forward(self, x, t):
        temb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.conv_in(x)
        skips = [h]
        for i, (op, mod) in enumerate(zip(self.down_plan, self.down)):
            if op == "res":
                h = mod(h, temb)
                if i + 1 == len(self.down_plan) or self.down_plan[i + 1] != "attn":
                    skips.append(h)
            else:
                h = mod(h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for op, mod in zip(self.up_plan, self.up):
            if op == "res":
                h = mod(torch.cat([h, skips.pop()], 1), temb)
            elif op == "attn":
                h = mod(h)
            else:
                h = mod(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# Ho et al.'s linear schedule, T = 1000, in float64 as zoo keeps it.
alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
