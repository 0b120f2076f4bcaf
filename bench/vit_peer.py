"""ViT training-step throughput in PyTorch Python: torchvision's VisionTransformer at
zoo's sizes (1-channel 28x28, patch 4, width 128, depth 6, 4 heads, MLP 256), the same
step as bench_vit.cpp. Run with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14)."""
import argparse
import json
import resource
import time

import torch
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=30)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--batch", type=int, default=128)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
vit = torchvision.models.VisionTransformer(image_size=28, patch_size=4, num_layers=6, num_heads=4,
                                          hidden_dim=128, mlp_dim=256, dropout=0.1, num_classes=10)
vit.conv_proj = torch.nn.Conv2d(1, 128, kernel_size=4, stride=4)  # grey images
vit.train()
opt = torch.optim.AdamW(vit.parameters(), lr=1e-3, weight_decay=0.05)
x = torch.rand(a.batch, 1, 28, 28)
y = torch.randint(0, 10, (a.batch,))


def step():
    loss = torch.nn.functional.cross_entropy(vit(x), y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vit.parameters(), 1.0)
    opt.step()


for _ in range(a.warmup):
    step()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
secs = time.perf_counter() - t0
print(json.dumps({"impl": "pytorch", "images_per_s": round(a.steps * a.batch / secs, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "params": sum(p.numel() for p in vit.parameters()), "threads": a.threads}))
