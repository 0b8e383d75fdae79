"""Train the photograph head: is a picture a photograph of the everyday world, or a texture, chart, scan,
star field, slide or graphic (where COCO's 80 things are not to be found)? numpy only.

    .venv/bin/python training/train_photo_head.py [--data ../shared/eval]

A logistic model on the classifier's 1280-d embedding (standardised, L2 100, the two kinds weighted
equally). Photographs: every image of recapture-dev, lol-dev/high, haze-dev/gt and sr (the fingerprint
projection's photos; never the benchmark's imagenet-dev, coco-dev or scene-dev). Other pictures: 400 drawn by
training/drawn_pictures.py (seed 1; the detector calibration's negatives are seed 0). Prints held-out
figures (a 5-fold split of the training pictures, drawn pictures of seed 2, and coco-dev / imagenet-dev,
which it never sees), then fits on all and writes imgrec/engines/weights/photo_head.npz. The detector's
presence model reads its logit (training/calibrate_detector.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))
OUT = ROOT / "imgrec" / "engines" / "weights" / "photo_head.npz"
PHOTO_SOURCES = ("recapture-dev", "lol-dev/high", "haze-dev/gt", "sr")
L2 = 100.0


def embeddings(pictures) -> np.ndarray:
    from imgrec.engines.classifier import Classifier, classifier

    model: Classifier = classifier()
    return np.stack([model.predict(rgb).embedding for rgb in pictures]).astype(np.float64)


def photographs(data: Path, sources=PHOTO_SOURCES):
    from PIL import Image

    for path in sorted(p for source in sources for p in (data / source).rglob("*")
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        yield np.asarray(Image.open(path).convert("RGB"))


def fit(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """L2-regularised logistic regression (Newton steps), the two classes weighted equally."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    w = np.zeros(z.shape[1])
    penalty = L2 * np.diag(np.r_[0.0, np.ones(len(w) - 1)])
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(30):
        p = 1 / (1 + np.exp(-z @ w))
        w -= np.linalg.solve((z * (weight * p * (1 - p))[:, None]).T @ z + penalty, z.T @ (weight * (p - y)) + penalty @ w)
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32),
            "weight": w[1:].astype(np.float32), "bias": np.float32(w[0])}


def logit(head: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return head["bias"] + ((x - head["mean"]) / head["scale"]) @ head["weight"]


def main() -> int:
    from drawn_pictures import pictures

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    args = parser.parse_args()
    photos = embeddings(photographs(args.data))
    drawn = embeddings(rgb for _, rgb in pictures(400, seed=1))
    x = np.concatenate([photos, drawn])
    y = np.r_[np.ones(len(photos)), np.zeros(len(drawn))]
    fold = np.random.default_rng(0).permutation(len(y)) % 5
    held = np.zeros(len(y))
    for k in range(5):
        held[fold == k] = logit(fit(x[fold != k], y[fold != k]), x[fold == k])
    print(f"5-fold: photographs judged photographs {np.mean(held[y == 1] > 0):.3f} of {int(y.sum())}, "
          f"drawn pictures judged not {np.mean(held[y == 0] <= 0):.3f} of {int(len(y) - y.sum())}")
    head = fit(x, y)
    unseen = logit(head, embeddings(rgb for _, rgb in pictures(200, seed=2)))
    print(f"drawn pictures of another seed judged not photographs: {np.mean(unseen <= 0):.3f} of {len(unseen)}")
    for name, pattern in (("coco-dev", "coco-dev/images/*.jpg"), ("imagenet-dev", "imagenet-dev/*.JPEG")):
        from PIL import Image

        found = logit(head, embeddings(np.asarray(Image.open(p).convert("RGB")) for p in sorted(args.data.glob(pattern))))
        print(f"{name} (never seen) judged photographs: {np.mean(found > 0):.3f} of {len(found)}")
    np.savez_compressed(OUT, **head, photographs=len(photos), drawn=len(drawn), sources=np.array(PHOTO_SOURCES))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
