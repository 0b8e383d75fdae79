"""Train the scene head: a softmax regression on the classifier's 1280-d embedding (numpy only).

    .venv/bin/python training/train_scene_head.py [--data ../shared/eval]

Classes: the six outdoor scenes of `scene-dev/` (Intel Image Classification: buildings, forest, glacier,
mountain, sea, street; 40 photos each) and "other", the photos of objects in `imagenet-dev/` (200, one per
ImageNet class), so that close-ups get no scene tag. Prints 5-fold cross-validated accuracy (each photo
predicted by a head that never saw it), then fits on everything and writes
imgrec/engines/weights/scene_head.npz. Provenance of that file: exactly these two folders.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENES = {"buildings": ("buildings", "建筑物"), "forest": ("forest", "森林"), "glacier": ("glacier", "冰川"),
          "mountain": ("mountain", "山"), "sea": ("sea", "海"), "street": ("street", "街道")}
OTHER = ("other", "其他")


def embeddings(files: list[Path]) -> np.ndarray:
    from PIL import Image

    from imgrec.engines.classifier import classifier
    from imgrec.settings import Settings

    model = classifier(Settings.load().models_dir)
    out = []
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        out.append(model.predict(rgb)[1])
    return np.stack(out)


def fit(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-2, steps: int = 600, lr: float = 0.5):
    """Full-batch gradient descent on the regularised cross-entropy (the problem is small and convex)."""
    w = np.zeros((classes, x.shape[1]))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        z = x @ w.T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= lr * (g.T @ x + l2 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def predict(w, b, x):
    return np.argmax(x @ w.T + b, axis=1)


def dataset(data: Path) -> tuple[list[Path], np.ndarray]:
    """The photos and their class index (the six scenes in SCENES' order, then "other")."""
    files, labels = [], []
    for i, scene in enumerate(SCENES):
        found = sorted((data / "scene-dev" / scene).glob("*.jpg"))
        files += found
        labels += [i] * len(found)
    others = sorted((data / "imagenet-dev").glob("*.JPEG"))
    return files + others, np.array(labels + [len(SCENES)] * len(others))


def folds(count: int, k: int = 5) -> np.ndarray:
    return np.random.default_rng(0).permutation(count) % k


def head(x_raw: np.ndarray, y: np.ndarray) -> tuple:
    """(weight, bias, mean, scale, en, zh) as the engine loads them."""
    mean, scale = x_raw.mean(0), x_raw.std(0) + 1e-6
    w, b = fit((x_raw - mean) / scale, y, len(SCENES) + 1)
    return (w.astype(np.float32), b.astype(np.float32), mean.astype(np.float32), scale.astype(np.float32),
            [SCENES[n][0] for n in SCENES] + [OTHER[0]], [SCENES[n][1] for n in SCENES] + [OTHER[1]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    args = parser.parse_args()
    names = list(SCENES) + [OTHER[0]]
    files, y = dataset(args.data)
    x_raw = embeddings(files)
    folds_of = folds(len(y))
    correct = np.zeros(len(y), bool)
    for k in range(5):
        train, test = folds_of != k, folds_of == k
        mean, scale = x_raw[train].mean(0), x_raw[train].std(0) + 1e-6
        w, b = fit((x_raw[train] - mean) / scale, y[train], len(names))
        correct[test] = predict(w, b, (x_raw[test] - mean) / scale) == y[test]
    for i, name in enumerate(names):
        print(f"{name:10s} cross-validated accuracy {correct[y == i].mean():.3f} ({(y == i).sum()} photos)")
    print(f"scenes only: {correct[y < len(SCENES)].mean():.3f}; all: {correct.mean():.3f}")
    w, b, mean, scale, en, zh = head(x_raw, y)
    target = ROOT / "imgrec" / "engines" / "weights" / "scene_head.npz"
    np.savez(target, weight=w, bias=b, mean=mean, scale=scale, en=np.array(en), zh=np.array(zh))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
