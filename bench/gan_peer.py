"""DCGAN training step in PyTorch Python: zoo's 28x28 generator (z 100 -> 7x7x256 -> 14x14x128
-> 28x28, batch norm, ReLU, tanh) and discriminator (28x28 -> 14x14x64 -> 7x7x128 -> 1,
LeakyReLU 0.2, batch norm on the second layer); a discriminator step, then a generator step
with the non-saturating loss, each Adam(2e-4, beta1 0.5): the step of bench.cpp's gan."""
import torch
import torch.nn as nn
import torch.nn.functional as F

import peer

a = peer.args(default_batch=64)
G = nn.Sequential(nn.ConvTranspose2d(100, 256, 7, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
                  nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
                  nn.ConvTranspose2d(128, 1, 4, 2, 1), nn.Tanh())
D = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                  nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                  nn.Conv2d(128, 1, 7), nn.Flatten(0))
g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
real = torch.rand(a.batch, 1, 28, 28) * 2 - 1
ones, zeros = torch.ones(a.batch), torch.zeros(a.batch)


def step():
    fake = G(torch.randn(a.batch, 100, 1, 1))
    d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    torch.clear_autocast_cache()  # the G step sees D's new weights under autocast, as in zoo_bench (the
    # end of the autocast scope clears the cache after a step's last optimizer step)
    g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()


peer.run(a, "gan", step, a.batch, "images", list(G.parameters()) + list(D.parameters()))
