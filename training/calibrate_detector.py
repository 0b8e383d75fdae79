"""Calibrate the detector into probabilities, fitted on COCO photos with boxes and on drawn pictures that
hold none of COCO's things (numpy only).

    .venv/bin/python training/calibrate_detector.py [--data ../shared/eval]

The detector's raw scores are not probabilities (a true cat and a false giraffe can score the same), while
the APIs' thresholds (v2 tagging 60, media tagging 40, main object 30) promise a confidence. Two maps:
- each box: isotonic regression of "the class is in the photo" on the class's best raw score, on the COCO
  photos (monotone, so rankings, boxes and mAP stay the detector's);
- each tag ("the class is in the photo"): a logistic model of detector.presence_features (the best and
  runner-up scores, the number of boxes, the largest box's share of the photo, the photo's best score, the
  number of classes found; the classifier's photograph logit below 0 and its belief in the class's ImageNet
  classes), so that a tag at confidence c is right about c% of the time; ranking by more than one score
  finds more of the objects at equal precision. Its probability is used as it is: an isotonic map on top
  (session 6) calibrated worse under cross-validation, the steps fitting noise. Its negatives include 660
  pictures drawn by training/drawn_pictures.py (seed 0: textures, slides, star fields, surfaces, scans,
  charts, graphics, flat colours, patterns, grains, discs with vessels), where CenterNet finds umbrellas,
  kites and stop signs in two pictures of three; fitted on COCO photos alone, the model trusted those.
Prints 5-fold cross-validated figures (each picture's tags calibrated by maps fitted on the other pictures),
then fits on all and writes imgrec/engines/weights/detector_calibration.npz. Provenance of that file:
`coco-dev/` (128 photos, coco128) and the 660 drawn pictures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.append(str(ROOT / "training"))  # after bench/: both have a `common` module


DRAWN = 660  # drawn pictures (training/drawn_pictures.py, seed 0): every class the detector finds there is absent


def candidates(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(raw best score, class present?, picture index, presence features + class id in the last column, from a
    COCO photo?) per detected (picture, class): the coco-dev photos, then the drawn pictures."""
    from PIL import Image

    from drawn_pictures import pictures
    from imgrec.engines.classifier import classifier
    from imgrec.engines.detector import detector, presence_features
    from imgrec.engines.labels import COCO
    from imgrec.settings import Settings
    from quality import coco_names

    names = coco_names(data)
    model, classes = detector(Settings.load().models_dir), classifier(Settings.load().models_dir)

    def photos():
        for path in sorted((data / "coco-dev" / "images").glob("*.jpg")):
            label_file = data / "coco-dev" / "labels" / f"{path.stem}.txt"
            yield np.asarray(Image.open(path).convert("RGB")), {names[int(line.split()[0])] for line in (
                label_file.read_text().splitlines() if label_file.exists() else [])}, True
        for _, rgb in pictures(DRAWN, seed=0):
            yield rgb, set(), False

    scores, present, picture, features, coco = [], [], [], [], []
    for i, (rgb, truth, is_coco) in enumerate(photos()):
        detections = model.detect(rgb)
        evidence = classes.evidence(classes.predict(rgb))
        groups: dict[int, list] = {}
        for d in detections:
            groups.setdefault(d.class_id, []).append(d)
        for class_id, group in groups.items():
            scores.append(max(d.score for d in group))
            present.append(COCO[class_id][0] in truth)
            picture.append(i)
            coco.append(is_coco)
            features.append([*presence_features(group, detections, rgb.shape[1], rgb.shape[0], evidence), class_id])
    return np.array(scores), np.array(present, float), np.array(picture), np.array(features), np.array(coco)


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


def fit(scores: np.ndarray, present: np.ndarray, features: np.ndarray, coco: np.ndarray) -> dict[str, np.ndarray]:
    """Both maps, as detector_calibration.npz holds them (imgrec/engines/detector.py reads them): the box map
    from the COCO photos' boxes, the tag model from every picture's."""
    raw, probability = isotonic(scores[coco], present[coco])
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
    scores, present, picture, features, coco = candidates(args.data)
    fold = np.random.default_rng(0).permutation(picture.max() + 1)[picture] % 5
    calibrated, tagged = np.zeros_like(scores), np.zeros_like(scores)
    for k in range(5):
        train = fold != k
        calibrated[~train] = apply(isotonic(scores[train & coco], present[train & coco]), scores[~train])
        tagged[~train] = tag_probability(fit(scores[train], present[train], features[train], coco[train]),
                                         features[~train])
    for threshold in (0.3, 0.4, 0.5, 0.6):
        for name, values in (("best box, isotonic", calibrated), ("presence model", tagged), ("raw", scores)):
            kept = coco & (values >= threshold)
            drawn = len(set(picture[~coco & (values >= threshold)]))
            print(f"detector tags at {threshold:.0%}, {name}{' (CV)' if name != 'raw' else ''}: COCO photos' "
                  f"precision {present[kept].mean():.3f}, {int(present[kept].sum())} right of {kept.sum()}; drawn "
                  f"pictures given a tag {drawn} of {DRAWN}")
    print(f"log loss on the COCO photos' tags (CV): best box, isotonic {log_loss(calibrated[coco], present[coco]):.3f}; "
          f"presence model {log_loss(tagged[coco], present[coco]):.3f}")
    target = ROOT / "imgrec" / "engines" / "weights" / "detector_calibration.npz"
    np.savez(target, **fit(scores, present, features, coco))
    print(f"{coco.sum()} (photo, class) candidates from {len(set(picture[coco]))} COCO photos, {(~coco).sum()} from "
          f"{len(set(picture[~coco]))} drawn pictures; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
