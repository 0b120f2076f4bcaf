#!/usr/bin/env python3
"""Reconstruction error of the latents `zoo sample --interpolate 2 --between A,B` finds: the first
N Fashion-MNIST test images, in pairs, through a DDPM checkpoint (DDIM inversion, then DDIM
sampling, eta 0, for each S) and a VAE checkpoint (the mean of q(z|x), decoded). Prints the mean
and largest squared error per pixel, pixels in [0, 1], of the row's two ends against the images.
Uses Debian's torch and torchvision (/usr/bin/python3) to read and write the PNG files.
    /usr/bin/python3 bench/reconstruction.py --ddpm C --vae C [--n 20] [--steps "10 50 100"]
        [--zoo build/zoo] [--data data/fashion-mnist]"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision.io as io

import fashion


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ddpm", required=True)
    ap.add_argument("--vae", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--steps", default="10 50 100")
    ap.add_argument("--zoo", default="build/zoo")
    ap.add_argument("--data", default="data/fashion-mnist")
    a = ap.parse_args()
    if a.n < 2 or a.n % 2:
        sys.exit("reconstruction.py: --n must be an even number of at least 2 (the images go in pairs)")
    images, _ = fashion.split(a.data, "test", a.n)
    runs = [("ddim S=%s" % s, ["ddim", "--checkpoint", a.ddpm, "--steps", s]) for s in a.steps.split()]
    runs.append(("vae", ["vae", "--checkpoint", a.vae]))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, im in enumerate(images):
            files.append(os.path.join(tmp, "%03d.png" % i))
            io.write_png(torch.from_numpy(im.copy()).unsqueeze(0), files[-1])
        for name, args in runs:
            errors = []
            for i in range(0, a.n, 2):
                out = os.path.join(tmp, "row.png")
                subprocess.run([a.zoo, "sample", *args, "--interpolate", "2", "--between",
                                files[i] + "," + files[i + 1], "--out", out],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                grid = io.read_image(out, io.ImageReadMode.GRAY)[0].double() / 255
                for j in range(2):  # zoo's grid: 2-pixel padding, each image drawn at twice its size
                    cell = grid[2:58, 2 + 58 * j: 58 + 58 * j][::2, ::2]
                    x = torch.from_numpy(images[i + j].astype(np.float64)) / 255
                    errors.append(((cell - x) ** 2).mean().item())
            e = torch.tensor(errors)
            print("%-12s %d images: squared error per pixel, mean %.4f, largest %.4f" % (name, a.n, e.mean(), e.max()))


if __name__ == "__main__":
    main()
