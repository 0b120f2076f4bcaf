"""Dropout alone in PyTorch Python: torch.nn.functional.dropout at p = 0.1, training mode, on a
(batch, 512) activation: the step of bench.cpp's dropout."""
import torch

import peer

a = peer.args(default_batch=2304)
x = torch.randn(a.batch, 512)
peer.run(a, "dropout", lambda: torch.nn.functional.dropout(x, 0.1, training=True), x.numel(), "elements", [])
