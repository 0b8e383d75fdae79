"""Train the recapture head on real recaptures: logistic regression over the classifier's embedding and
the spectral / tone features of recapture_features.py (numpy only).

    .venv/bin/python training/train_recapture_head.py [--data ../shared/eval]

Recaptured (1): `recapture-dev/screen/` (24 phone photos of screens) and `recapture-dev/print-face/` (96
webcam shots of printed faces, NUAA subjects 1-8). Genuine (0): `recapture-dev/live-face/` (96 live faces
of the same subjects), `imagenet-dev/` (200) and `coco-dev/images/` (128). Cross-validation is grouped:
a NUAA subject's live and printed faces always sit in the same fold, so no figure comes from a face the
head saw. Prints the cross-validated figures at the API's default threshold 0.95, then fits on everything
and writes imgrec/engines/weights/recapture_head.npz. Provenance of that file: exactly these folders.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
THRESHOLD = 0.95


def dataset(data: Path) -> tuple[list[Path], np.ndarray, np.ndarray, list[str]]:
    """Photos, labels (1 = recaptured), groups (photos that must share a fold) and the set each is from."""
    sets = [("screen", sorted((data / "recapture-dev" / "screen").glob("*.*")), 1),
            ("print-face", sorted((data / "recapture-dev" / "print-face").glob("*.*")), 1),
            ("live-face", sorted((data / "recapture-dev" / "live-face").glob("*.*")), 0),
            ("imagenet-dev", sorted((data / "imagenet-dev").glob("*.JPEG")), 0),
            ("coco-dev", sorted((data / "coco-dev" / "images").glob("*.jpg")), 0)]
    files, labels, groups, origin = [], [], [], []
    for name, found, label in sets:
        for path in found:
            files.append(path)
            labels.append(label)
            # NUAA names start with the subject number: a subject's faces share one group
            groups.append(f"subject-{path.name[:4]}" if name.endswith("face") else f"{name}/{path.name}")
            origin.append(name)
    return files, np.array(labels), np.array(groups), origin


def features_of(files: list[Path], cache: Path | None = None) -> np.ndarray:
    if cache is not None and cache.is_file():
        return np.load(cache)
    from imgrec.engines.recapture_detect import engine_features
    from imgrec.schemas.common import ANY_IMAGE, inspect_image
    from imgrec.settings import Settings

    models_dir = Settings.load().models_dir
    rows = []
    for path in files:
        data = path.read_bytes()
        rows.append(engine_features(data, inspect_image(data, ANY_IMAGE), models_dir))
    if cache is not None:
        np.save(cache, np.stack(rows))
    return np.stack(rows)


def fit(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 800, lr: float = 0.3):
    """Class-balanced, L2-regularised logistic regression by full-batch gradient descent (convex, small)."""
    w, b = np.zeros(x.shape[1]), 0.0
    weight = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = weight * (p - y) / len(y)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum()
    return w, b


def head(x_raw: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    mean, scale = x_raw.mean(0), x_raw.std(0) + 1e-6
    w, b = fit((x_raw - mean) / scale, y, l2)
    return w, b, mean, scale


def logit(model, x_raw: np.ndarray) -> np.ndarray:
    w, b, mean, scale = model
    return ((x_raw - mean) / scale) @ w + b


def platt(z: np.ndarray, y: np.ndarray, steps: int = 3000, lr: float = 0.05) -> tuple[float, float]:
    """p = sigmoid(a z + c) fitted, unweighted, on logits of photos the head did not see: the balanced
    training above ranks well but over-states recapture; this makes p a frequency, so that "true" at the
    default threshold 0.95 means p(recaptured) <= 0.05 and holds up."""
    a, c = 1.0, 0.0
    for _ in range(steps):
        g = 1 / (1 + np.exp(-(a * z + c))) - y
        a -= lr * float(np.mean(g * z))
        c -= lr * float(np.mean(g))
    return a, c


def calibrated(x_raw: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float):
    """Head on all of `x_raw`, Platt-calibrated on its own grouped out-of-fold logits."""
    inner = group_folds(groups, 4)
    z = np.zeros(len(y))
    for k in range(4):
        z[inner == k] = logit(head(x_raw[inner != k], y[inner != k], l2), x_raw[inner == k])
    return head(x_raw, y, l2), platt(z, y)


def probability(model, x_raw: np.ndarray) -> np.ndarray:
    (w, b, mean, scale), (a, c) = model
    return 1 / (1 + np.exp(-(a * logit((w, b, mean, scale), x_raw) + c)))


def group_folds(groups: np.ndarray, k: int = 5) -> np.ndarray:
    unique = sorted(set(groups))
    order = np.random.default_rng(0).permutation(len(unique))
    fold_of_group = {unique[i]: j % k for j, i in enumerate(order)}
    return np.array([fold_of_group[g] for g in groups])


def report(p: np.ndarray, y: np.ndarray, origin: list[str]) -> dict[str, float]:
    true = p <= 1 - THRESHOLD  # the API's "true" verdict at the default threshold
    out = {}
    for name in ("imagenet-dev", "coco-dev", "live-face"):
        idx = [i for i, o in enumerate(origin) if o == name]
        out[f"genuine {name} 'true'"] = float(true[idx].mean())
    for name in ("screen", "print-face"):
        idx = [i for i, o in enumerate(origin) if o == name]
        out[f"{name} not 'true'"] = float((~true[idx]).mean())
    out["'true' verdicts that are genuine"] = float((y[true] == 0).mean()) if true.any() else float("nan")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--l2", type=float, default=0.05)
    parser.add_argument("--cache", type=Path, default=None, help="features file (.npy) to reuse across runs")
    args = parser.parse_args()
    files, y, groups, origin = dataset(args.data)
    x_raw = features_of(files, args.cache)
    fold_of = group_folds(groups)
    p = np.zeros(len(y))
    for k in range(5):  # nested: each outer fold's head and its calibration see only the other folds
        train, test = fold_of != k, fold_of == k
        p[test] = probability(calibrated(x_raw[train], y[train], groups[train], args.l2), x_raw[test])
    for name, value in report(p, y, origin).items():
        print(f"cross-validated {name}: {value:.3f}")
    (w, b, mean, scale), (a, c) = calibrated(x_raw, y, groups, args.l2)
    target = ROOT / "imgrec" / "engines" / "weights" / "recapture_head.npz"
    # the calibration folded into the head: p = sigmoid(a (w.x + b) + c)
    np.savez(target, weight=(a * w).astype(np.float32), bias=np.float32(a * b + c), mean=mean.astype(np.float32),
             scale=scale.astype(np.float32))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
