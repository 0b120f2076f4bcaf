"""zoo's SpamAssassin split, for the Python anchors: build/bench/zoo_spam_splits (bench/spam_splits.cpp)
runs zoo's own loader, which splits by each message's body (train/data/spamassassin.h)."""
import os
import subprocess
import sys


def zoo_splits(root, binary="build/bench/zoo_spam_splits"):
    """{"<folder>/<file without .txt>": "train" | "val" | "test"}: zoo's split, from its own loader."""
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary}: missing; run scripts/build (it builds zoo's split lister) or give --splits-bin")
    out = subprocess.run([binary, root], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr.strip() or f"{binary} {root}: exit code {out.returncode}")
    return dict(line.split("\t") for line in out.stdout.splitlines())
