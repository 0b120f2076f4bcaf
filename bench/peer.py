"""What the PyTorch Python peers share: arguments, timing, and the JSON line that
scripts/bench reads beside zoo_bench's. Run with Debian's /usr/bin/python3 (torch 1.13) on the
CPU; --device cuda needs a CUDA torch of 2.0 or later (torch.set_default_device puts every
tensor and module the peer makes on the GPU)."""
import argparse
import json
import resource
import sys
import time

import torch


def args(default_batch):
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = p.parse_args()
    a.batch = a.batch or default_batch
    if a.device == "cuda":
        if not torch.cuda.is_available() or not hasattr(torch, "set_default_device"):
            sys.exit(f"{sys.argv[0]}: --device cuda needs a CUDA torch 2.0 or later; this is torch {torch.__version__}")
        torch.set_default_device("cuda")
    if a.precision == "bf16" and a.device == "cpu" and int(torch.__version__.split(".")[0]) < 2:
        float_norms()  # torch 1.13's limits under CPU autocast (torch 2.x has neither)
        no_fast_attention()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a


def float_norms():
    """Layer and group norm of a bf16 input with float weights, as zoo's (models/common/norm.h) and
    CUDA autocast take them: the input cast to the weights' type. torch 1.13's CPU kernels
    refuse the mix ("expected scalar type BFloat16 but found Float") that CPU autocast makes."""
    F = torch.nn.functional
    for name in ("layer_norm", "group_norm"):
        plain = getattr(F, name)

        def cast(x, *rest, _plain=plain, **kw):
            w = kw.get("weight", rest[1] if len(rest) > 1 else None)
            if w is not None and x.dtype != w.dtype:
                x = x.to(w.dtype)
            return _plain(x, *rest, **kw)
        setattr(F, name, cast)


def no_fast_attention():
    """nn.MultiheadAttention's fused inference path under CPU autocast takes the general path, as
    PyTorch itself does under CUDA autocast ("autocast is enabled"); torch 1.13 checks CUDA's
    alone, and its fused kernel then fails on the bf16 products autocast makes inside it. An
    attention mask that masks nothing is what routes a call to the general path."""
    plain = torch.nn.MultiheadAttention.forward

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, *args, **kw):
        fused_possible = not self.training and not torch.is_grad_enabled()  # training never takes it
        if fused_possible and attn_mask is None and torch.is_autocast_cpu_enabled() and query.dim() == 3:
            t = 1 if self.batch_first else 0
            attn_mask = torch.zeros(query.size(t), key.size(t), dtype=torch.bool)
        return plain(self, query, key, value, key_padding_mask, need_weights, attn_mask, *args, **kw)
    torch.nn.MultiheadAttention.forward = forward


def optimizer_step(opt, params):
    """AdamW/Adam step with gradient clipping at 1, as zoo's trainer takes it."""
    def update(loss):
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return update


def run(a, model, step_fp32, items_per_step, unit, params):
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step():  # --precision bf16: the whole step under autocast, as zoo_bench (and zoo's trainer) take it
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            step_fp32()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    secs = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "model": model, "items_per_s": round(a.steps * items_per_step / secs, 2),
                      "unit": unit,
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "params": sum(p.numel() for p in params), "threads": a.threads, "device": a.device,
                      "precision": a.precision}))
