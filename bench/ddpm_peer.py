"""DDPM training step in PyTorch Python: zoo's U-Net (unet_peer.py), the simple loss on epsilon
at a random timestep, Adam: the step of bench.cpp's ddpm."""
import torch

import peer
import unet_peer

a = peer.args(default_batch=128)
unet = unet_peer.UNet()
unet.train()
params = list(unet.parameters())
update = peer.optimizer_step(torch.optim.Adam(params, lr=2e-4), params)
x0 = torch.rand(a.batch, 1, 28, 28) * 2 - 1
ab = unet_peer.alphas_cumprod.to(a.device)


def step():
    t = torch.randint(0, 1000, (a.batch,))
    noise = torch.randn_like(x0)
    s = ab[t].float()[:, None, None, None]
    x_t = s.sqrt() * x0 + (1 - s).sqrt() * noise
    update(torch.nn.functional.mse_loss(unet(x_t, t), noise))


peer.run(a, "ddpm", step, a.batch, "images", params)
