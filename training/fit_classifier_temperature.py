"""Fit the classifier's temperature: the divisor of its logits that makes its tags' probabilities honest.

    .venv/bin/python training/fit_classifier_temperature.py [--data ../shared/eval]

EfficientNet-Lite0's softmax is under-confident (trained with label smoothing): on imagenet-dev a top-1 class
at 30-60% is right about three times in four. One number, chosen on a grid to minimise the log loss of the
true class (temperature scaling, Guo et al. 2017), keeps every class's order and sharpens the probabilities.
Prints a 5-fold cross-validated temperature per fold, the top-1 reliability (expected calibration error) of
the held-out folds before and after, and the value for imgrec/engines/classifier.py's TEMPERATURE.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = np.round(np.arange(0.40, 1.51, 0.01), 2)
FOLDS = 5


def imagenet_photos(data: Path) -> list[Path]:
    return sorted((data / "imagenet-dev").glob("*.JPEG"))


def probabilities(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(photos x 1000 raw softmax of the classifier, the true class of each: its file name's WNID)."""
    from PIL import Image

    from imgrec.engines.classifier import classifier
    from imgrec.engines.labels import imagenet_classes

    index = {c.wnid: i for i, c in enumerate(imagenet_classes())}
    model = classifier()
    probs = [model.predict(np.asarray(Image.open(p).convert("RGB"))).probs for p in paths]
    return np.array(probs, np.float64), np.array([index[p.stem.split("_")[0]] for p in paths])


def log_loss(probs: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    from imgrec.engines.classifier import tempered

    p = tempered(probs, temperature)[np.arange(len(truth)), truth]
    return float(-np.log(np.maximum(p, 1e-30)).mean())


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(GRID[int(np.argmin([log_loss(probs, truth, t) for t in GRID]))])


def folds(n: int) -> np.ndarray:
    """A fixed 5-fold split of n photos (the bench uses the same one)."""
    return np.random.default_rng(0).permutation(n) % FOLDS


def calibration_error(p: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-1: |accuracy - confidence| over 10 equal bins, weighted."""
    confidence, right = p.max(axis=1), p.argmax(axis=1) == truth
    edges = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(right[edges == b].mean() - confidence[edges == b].mean()) * (edges == b).mean()
                     for b in range(bins) if (edges == b).any()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    args = parser.parse_args()
    from imgrec.engines.classifier import tempered

    probs, truth = probabilities(imagenet_photos(args.data))
    split = folds(len(truth))
    held = np.zeros_like(probs)
    for k in range(FOLDS):
        train, test = split != k, split == k
        t = fit_temperature(probs[train], truth[train])
        held[test] = tempered(probs[test], t)
        print(f"fold {k}: temperature {t:.2f}, held-out log loss {log_loss(probs[test], truth[test], t):.3f}"
              f" (raw {log_loss(probs[test], truth[test], 1.0):.3f})")
    print(f"{len(truth)} photos, top-1 {np.mean(probs.argmax(1) == truth):.3f}; mean top-1 probability raw "
          f"{probs.max(1).mean():.3f}, held-out tempered {held.max(1).mean():.3f}")
    print(f"expected calibration error of the top-1: raw {calibration_error(probs, truth):.3f}, "
          f"held-out tempered {calibration_error(held, truth):.3f}")
    print(f"TEMPERATURE = {fit_temperature(probs, truth):.2f}  (imgrec/engines/classifier.py)")


if __name__ == "__main__":
    main()
