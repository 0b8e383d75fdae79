"""Calibrate the detector into probabilities, fitted on COCO photos with boxes (numpy only).

    .venv/bin/python training/calibrate_detector.py [--data ../shared/eval]

The detector's raw scores are not probabilities (a true cat and a false giraffe can score the same), while
the APIs' thresholds (v2 tagging 60, media tagging 40, main object 30) promise a confidence. Two maps:
- each box: isotonic regression of "the class is in the photo" on the class's best raw score (monotone, so
  rankings, boxes and mAP stay the detector's);
- each tag ("the class is in the photo"): a logistic model of detector.presence_features (the best and
  runner-up scores, the number of boxes, the largest box's share of the photo, the photo's best score, the
  number of classes found), so that a tag at confidence c is right about c% of the time; ranking by more
  than one score finds more of the objects at equal precision. Its probability is used as it is: an isotonic
  map on top (session 6) calibrated worse under cross-validation (log loss 0.347-0.352 vs 0.331-0.334,
  expected calibration error 0.030-0.036 vs 0.007-0.019 over three fold splits), the steps fitting noise.
Prints 5-fold cross-validated figures (each photo's tags calibrated by maps fitted on the other photos),
then fits on all of `coco-dev/` (128 photos, coco128) and writes imgrec/engines/weights/
detector_calibration.npz. Provenance of that file: exactly that folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def candidates(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(raw best score, class present?, photo index, presence features + class id in the last column) per
    detected (photo, class)."""
    from PIL import Image

    from imgrec.engines.detector import detector, presence_features
    from imgrec.engines.labels import COCO
    from imgrec.settings import Settings
    from quality import coco_names

    names = coco_names(data)
    model = detector(Settings.load().models_dir)
    scores, present, photo, features = [], [], [], []
    for i, path in enumerate(sorted((data / "coco-dev" / "images").glob("*.jpg"))):
        label_file = data / "coco-dev" / "labels" / f"{path.stem}.txt"
        truth = {names[int(line.split()[0])] for line in
                 (label_file.read_text().splitlines() if label_file.exists() else [])}
        rgb = np.asarray(Image.open(path).convert("RGB"))
        detections = model.detect(rgb)
        groups: dict[int, list] = {}
        for d in detections:
            groups.setdefault(d.class_id, []).append(d)
        for class_id, group in groups.items():
            scores.append(max(d.score for d in group))
            present.append(COCO[class_id][0] in truth)
            photo.append(i)
            features.append([*presence_features(group, detections, rgb.shape[1], rgb.shape[0]), class_id])
    return np.array(scores), np.array(present, float), np.array(photo), np.array(features)


def logistic(features: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, scale, weights): L2-regularised logistic regression on standardised features (Newton steps)."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(features)), (features - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = l2 * np.diag(np.r_[0.0, np.ones(len(w) - 1)])
    for _ in range(50):
        p = 1 / (1 + np.exp(-z @ w))
        w -= np.linalg.solve((z * (p * (1 - p))[:, None]).T @ z + penalty, z.T @ (p - y) + penalty @ w)
    return mean, scale, w


def fit(scores: np.ndarray, present: np.ndarray, features: np.ndarray) -> dict[str, np.ndarray]:
    """Both maps, as detector_calibration.npz holds them (imgrec/engines/detector.py reads them)."""
    raw, probability = isotonic(scores, present)
    features = features[:, :-1]  # the class id column: not a feature (per-class rates overfit, see BENCHMARKS)
    mean, scale, weights = logistic(features, present)
    arrays = {"raw": raw, "probability": probability, "mean": mean, "scale": scale, "weights": weights}
    return {name: value.astype(np.float64) for name, value in arrays.items()}


def tag_probability(model: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    from imgrec.engines.detector import presence_probability

    return presence_probability(model, features[:, :-1])  # the last column is the class id


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: knots (x, fitted y), non-decreasing in x."""
    order = np.argsort(x)
    xs, ys = x[order], y[order]
    blocks: list[list[float]] = []  # [sum y, count, max x]
    for xv, yv in zip(xs, ys):
        blocks.append([yv, 1.0, xv])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, n, top = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] = top
    knots_x = np.array([b[2] for b in blocks])
    knots_y = np.array([b[0] / b[1] for b in blocks])
    return knots_x, knots_y


def apply(knots: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    kx, ky = knots
    return np.interp(x, kx, ky, left=ky[0], right=ky[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    args = parser.parse_args()
    scores, present, photo, features = candidates(args.data)
    fold = np.random.default_rng(0).permutation(photo.max() + 1)[photo] % 5
    calibrated, tagged = np.zeros_like(scores), np.zeros_like(scores)
    for k in range(5):
        train = fold != k
        calibrated[~train] = apply(isotonic(scores[train], present[train]), scores[~train])
        tagged[~train] = tag_probability(fit(scores[train], present[train], features[train]), features[~train])
    for threshold in (0.3, 0.4, 0.5, 0.6):
        for name, values in (("best box, isotonic", calibrated), ("presence model", tagged), ("raw", scores)):
            kept = values >= threshold
            print(f"detector tags at {threshold:.0%}, {name}{' (CV)' if name != 'raw' else ''}: precision "
                  f"{present[kept].mean():.3f}, {int(present[kept].sum())} right of {kept.sum()}")
    print(f"log loss (CV): best box, isotonic {log_loss(calibrated, present):.3f}; presence model "
          f"{log_loss(tagged, present):.3f}")
    target = ROOT / "imgrec" / "engines" / "weights" / "detector_calibration.npz"
    np.savez(target, **fit(scores, present, features))
    print(f"{len(scores)} (photo, class) candidates from {photo.max() + 1} photos; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
