#!/usr/bin/env python3
"""Writes the first N Fashion-MNIST test images as PNG files named NNN-LABEL.png, in three forms
(index % 3: grey 28x28, RGB 28x28, grey 56x56), for trying `zoo zero-shot` on files that are
not all the training format. Uses Debian's torch and torchvision (/usr/bin/python3).
    /usr/bin/python3 bench/fashion_pngs.py OUT_DIR [N=100] [data/fashion-mnist]"""
import os
import sys

import torch
import torchvision

import fashion


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    root = sys.argv[3] if len(sys.argv) > 3 else "data/fashion-mnist"
    images, labels = fashion.split(root, "test", n)
    os.makedirs(out, exist_ok=True)
    for i in range(len(images)):
        t = torch.from_numpy(images[i].copy()).unsqueeze(0)
        if i % 3 == 1:
            t = t.repeat(3, 1, 1)
        elif i % 3 == 2:
            t = torch.nn.functional.interpolate(t[None].float(), size=(56, 56), mode="bilinear")[0]
            t = t.round().clamp(0, 255).to(torch.uint8)
        torchvision.io.write_png(t, os.path.join(out, f"{i:03d}-{labels[i]}.png"))


if __name__ == "__main__":
    main()
