#!/usr/bin/env python3
"""k-nearest-neighbour accuracy of `zoo embed` vectors on Fashion-MNIST. The training images
(the first N of the 60,000) and the 10,000 test images are written as PNG files, embedded by
`zoo embed --checkpoint C --images` (the file names on its standard input), and each test image
takes the label most of its k nearest training vectors have (Euclidean distance; ties go to the
nearest). The same on the raw pixels (784 values in [0, 1]) is the reference. Uses Debian's torch
and torchvision (/usr/bin/python3); run from the repository root.
    /usr/bin/python3 bench/embed_knn.py CHECKPOINT [--k 5] [--train 60000] [--zoo build/zoo] [--data data/fashion-mnist]"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

import fashion


def embed(zoo, checkpoint, paths):
    """zoo embed's vectors for the image files `paths`, in order, (N, D) float64."""
    out = subprocess.run([zoo, "embed", "--checkpoint", checkpoint, "--images"], input="\n".join(paths) + "\n",
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("zoo embed failed: " + out.stderr.strip())
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    if len(rows) != len(paths):
        sys.exit(f"zoo embed printed {len(rows)} vectors for {len(paths)} images")
    return torch.tensor(np.array(rows, dtype=np.float64))


def knn_accuracy(train_x, train_y, test_x, test_y, k):
    right = 0
    for i in range(0, len(test_x), 500):
        d = torch.cdist(test_x[i:i + 500], train_x)  # (b, N), in float64: near ties decided exactly
        idx = d.topk(k, largest=False).indices  # nearest first
        votes = train_y[idx]  # (b, k)
        counts = torch.zeros(len(votes), 10).scatter_add_(1, votes, torch.ones_like(votes, dtype=torch.float))
        # A tie goes to the label of the nearest neighbour among the tied ones.
        best = counts.max(1, keepdim=True).values
        tied = counts.eq(best).gather(1, votes)  # (b, k): is this neighbour's label among the winners
        pred = votes.gather(1, tied.float().argmax(1, keepdim=True)).squeeze(1)
        right += int((pred == test_y[i:i + 500]).sum())
    return right / len(test_x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--k", type=int, default=5, help="neighbours that vote (at most --train)")
    ap.add_argument("--train", type=int, default=60000)
    ap.add_argument("--zoo", default="build/zoo")
    ap.add_argument("--data", default="data/fashion-mnist")
    a = ap.parse_args()
    if not 1 <= a.k <= a.train:
        sys.exit(f"--k {a.k}: expected 1 to --train ({a.train})")
    torch.set_num_threads(os.cpu_count() or 1)
    splits = {}
    for split, n in (("train", a.train), ("test", 10000)):
        images, labels = fashion.split(a.data, split, n)
        splits[split] = (images, torch.tensor(labels.astype(np.int64)))
    with tempfile.TemporaryDirectory() as tmp:
        vectors = {}
        for split, (images, _) in splits.items():
            paths = []
            for i, img in enumerate(images):
                paths.append(os.path.join(tmp, f"{split}-{i:05d}.png"))
                torchvision.io.write_png(torch.from_numpy(img.copy()).unsqueeze(0), paths[-1])
            vectors[split] = embed(a.zoo, a.checkpoint, paths)
    (train_img, train_y), (test_img, test_y) = splits["train"], splits["test"]
    pixels = {s: torch.tensor(splits[s][0].reshape(len(splits[s][0]), -1), dtype=torch.float64) / 255 for s in splits}
    print(f"{a.k}-NN test accuracy, {len(train_y)} training images, 10000 test images:")
    print(f"  zoo embed ({vectors['train'].shape[1]} values): "
          f"{100 * knn_accuracy(vectors['train'], train_y, vectors['test'], test_y, a.k):.2f}%")
    print(f"  raw pixels (784 values):  {100 * knn_accuracy(pixels['train'], train_y, pixels['test'], test_y, a.k):.2f}%")


if __name__ == "__main__":
    main()
