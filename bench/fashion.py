"""Fashion-MNIST's IDX files for the README scripts (embed_knn.py, reconstruction.py,
fashion_pngs.py): the images and labels of a split, as numpy arrays."""
import os
import sys

import numpy as np


def read_idx(path):
    """The array an IDX file holds (LeCun's format: magic 0, 0, type 0x08 = unsigned byte, the
    number of dimensions, then each dimension as a big-endian 32-bit count)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}; run scripts/fetch-data, or name the folder that holds the data")
    if len(data) < 4 or data[:3] != b"\0\0\x08" or len(data) < 4 + 4 * data[3]:
        sys.exit(f"{path}: not an unsigned-byte IDX file; run scripts/fetch-data again")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(data[3])]
    offset = 4 + 4 * len(dims)
    if len(data) != offset + int(np.prod(dims)):
        sys.exit(f"{path}: holds {len(data) - offset} values, its header says {int(np.prod(dims))}; "
                 "run scripts/fetch-data again")
    return np.frombuffer(data[offset:], np.uint8).reshape(dims)


def split(root, name, n=None):
    """(images (N, 28, 28), labels (N,)), both uint8, of split `name` ("train" or "test"); the
    first n of them when n is given."""
    prefix = {"train": "train", "test": "t10k"}[name]
    images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        sys.exit(f"{root}: the {name} split holds images {images.shape} and labels {labels.shape}, not "
                 "(N, 28, 28) and (N,); run scripts/fetch-data again")
    if n is not None and n > len(images):
        sys.exit(f"the {name} split holds {len(images)} images, fewer than the {n} asked for")
    return images[:n], labels[:n]
