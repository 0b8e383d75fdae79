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


def log_probabilities(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(photos x 1000 log softmax of the raw classifier, the true class of each: its file name's WNID)."""
    from PIL import Image

    from imgrec.engines.classifier import classifier
    from imgrec.engines.labels import imagenet_classes

    index = {c.wnid: i for i, c in enumerate(imagenet_classes())}
    model = classifier()
    logp = [np.log(np.maximum(model.predict(np.asarray(Image.open(p).convert("RGB"))).probs, 1e-30)) for p in paths]
    return np.array(logp, np.float64), np.array([index[p.stem.split("_")[0]] for p in paths])


def softmax(logp: np.ndarray, temperature: float) -> np.ndarray:
    z = logp / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_loss(logp: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    p = softmax(logp, temperature)[np.arange(len(truth)), truth]
    return float(-np.log(np.maximum(p, 1e-30)).mean())


def fit_temperature(logp: np.ndarray, truth: np.ndarray) -> float:
    return float(GRID[int(np.argmin([log_loss(logp, truth, t) for t in GRID]))])


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
    logp, truth = log_probabilities(imagenet_photos(args.data))
    split = folds(len(truth))
    held = np.zeros_like(logp)
    for k in range(FOLDS):
        t = fit_temperature(logp[split != k], truth[split != k])
        held[split == k] = softmax(logp[split == k], t)
        print(f"fold {k}: temperature {t:.2f}, held-out log loss {log_loss(logp[split == k], truth[split == k], t):.3f}"
              f" (raw {log_loss(logp[split == k], truth[split == k], 1.0):.3f})")
    raw = softmax(logp, 1.0)
    print(f"{len(truth)} photos, top-1 {np.mean(raw.argmax(1) == truth):.3f}; mean top-1 probability raw "
          f"{raw.max(1).mean():.3f}, held-out tempered {held.max(1).mean():.3f}")
    print(f"expected calibration error of the top-1: raw {calibration_error(raw, truth):.3f}, "
          f"held-out tempered {calibration_error(held, truth):.3f}")
    print(f"TEMPERATURE = {fit_temperature(logp, truth):.2f}  (imgrec/engines/classifier.py)")


if __name__ == "__main__":
    main()
