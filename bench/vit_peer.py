"""ViT training step in PyTorch Python: torchvision's VisionTransformer at zoo's sizes
(1-channel 28x28, patch 4, width 128, depth 6, 4 heads, MLP 256), the step of bench.cpp's vit."""
import torch
import torchvision

import peer

a = peer.args(default_batch=128)
vit = torchvision.models.VisionTransformer(image_size=28, patch_size=4, num_layers=6, num_heads=4,
                                          hidden_dim=128, mlp_dim=256, dropout=0.1, num_classes=10)
vit.conv_proj = torch.nn.Conv2d(1, 128, kernel_size=4, stride=4)  # grey images
vit.train()
params = list(vit.parameters())
update = peer.optimizer_step(torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05), params)
x = torch.rand(a.batch, 1, 28, 28)
y = torch.randint(0, 10, (a.batch,))
peer.run(a, "vit", lambda: update(torch.nn.functional.cross_entropy(vit(x), y)), a.batch, "images", params)
