"""Calibrate the detector's scores into probabilities: isotonic regression of "the class is in the photo"
on NanoDet's best raw score for that class, fitted on COCO photos with boxes (numpy only).

    .venv/bin/python training/calibrate_detector.py [--data ../shared/eval]

NanoDet's raw scores are not probabilities (a true cat at 0.45, a false giraffe at 0.45), while the API's
thresholds (v2 tagging 60, media tagging 40, main object 30) promise a confidence. The map is monotone, so
rankings, boxes and mAP stay as they were; only the scale changes, so that a tag at confidence c is right
about c% of the time. Prints 5-fold cross-validated figures (each photo's tags calibrated by a map fitted
on the other photos), then fits on all of `coco-dev/` (128 photos, coco128) and writes
imgrec/engines/weights/detector_calibration.npz. Provenance of that file: exactly that folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def candidates(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw best score, class present?, photo index) per detected (photo, class)."""
    from PIL import Image

    from imgrec.engines.detector import detector
    from imgrec.engines.labels import COCO
    from imgrec.settings import Settings
    from quality import coco_names

    names = coco_names(data)
    model = detector(Settings.load().models_dir)
    scores, present, photo = [], [], []
    for i, path in enumerate(sorted((data / "coco-dev" / "images").glob("*.jpg"))):
        label_file = data / "coco-dev" / "labels" / f"{path.stem}.txt"
        truth = {names[int(line.split()[0])] for line in
                 (label_file.read_text().splitlines() if label_file.exists() else [])}
        best: dict[str, float] = {}
        for d in model.detect(np.asarray(Image.open(path).convert("RGB"))):
            name = COCO[d.class_id][0]
            best[name] = max(best.get(name, 0.0), float(d.score))
        for name, score in best.items():
            scores.append(score)
            present.append(name in truth)
            photo.append(i)
    return np.array(scores), np.array(present, float), np.array(photo)


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
    scores, present, photo = candidates(args.data)
    fold = np.random.default_rng(0).permutation(photo.max() + 1)[photo] % 5
    calibrated = np.zeros_like(scores)
    for k in range(5):
        calibrated[fold == k] = apply(isotonic(scores[fold != k], present[fold != k]), scores[fold == k])
    for threshold in (0.3, 0.4, 0.5, 0.6):
        kept = calibrated >= threshold
        raw_kept = scores >= threshold
        print(f"detector tags at {threshold:.0%}: calibrated (CV) precision {present[kept].mean():.3f} of "
              f"{kept.sum()}; raw precision {present[raw_kept].mean():.3f} of {raw_kept.sum()}")
    knots = isotonic(scores, present)
    target = ROOT / "imgrec" / "engines" / "weights" / "detector_calibration.npz"
    np.savez(target, raw=knots[0].astype(np.float32), probability=knots[1].astype(np.float32))
    print(f"{len(scores)} (photo, class) candidates from {photo.max() + 1} photos; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
