"""Recognition quality on real labelled photos, next to the published figures.

    .venv/bin/python bench/quality.py [--data ../shared/eval] [--limit N]

Every figure goes through the engines exactly as the APIs answer (in-process, the default parameters
unless a figure says otherwise), on the development splits of `../shared/eval/` (see its README):
- coco-dev (128 COCO photos with boxes): media-tagging-det mAP@0.5 (threshold 1, limit 50; COCO-style
  101-point interpolated AP, mean over the classes present); image tagging v2 at its default threshold:
  precision and recall of the COCO class names it tags against those present (a tag counts when its
  English name equals the COCO name).
- imagenet-dev (200 photos, one per class): the photo's class among the v2 tags at threshold 30 (the tag's
  English name equals the class's name in our label table, or the file's own WordNet name).
- scene-dev (240 outdoor photos, six scenes): a v2 tag naming the scene or an obvious synonym.
- recapture: the share of genuine photos (imagenet-dev, coco-dev, NUAA live faces) answered "true", and of
  screen photos and printed faces answered something else, at the default threshold 0.95. The scene and
  recapture heads are trained on these very photos, so those figures are cross-validated: each photo is
  judged by a head fitted without it (and without its NUAA subject).
- one-core latency of image tagging v2 per photo (median over the COCO photos).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENE_SYNONYMS = {
    "buildings": {"buildings", "building", "palace", "church", "monastery", "mosque", "castle", "library", "dome",
                  "bell tower", "triumphal arch", "prison", "planetarium", "cinema", "boathouse"},
    "forest": {"forest", "woods", "tree"},
    "glacier": {"glacier", "ice", "snow"},
    "mountain": {"mountain", "valley", "volcano", "cliff", "alp"},
    "sea": {"sea", "beach", "lakeshore", "sandbar", "promontory", "coral reef", "ocean"},
    "street": {"street", "road"},
}


def coco_names(data: Path) -> list[str]:
    names = {}
    for line in (data / "coco-dev" / "names.yaml").read_text().splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip().isdigit():
            names[int(key)] = value.strip().strip("'\"")
    return [names[i] for i in sorted(names)]


def ap101(scores: list[float], hits: list[bool], positives: int) -> float:
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores)) if scores else np.array([], int)
    tp = np.cumsum(np.asarray(hits, float)[order]) if scores else np.array([])
    fp = np.cumsum(1 - np.asarray(hits, float)[order]) if scores else np.array([])
    recall = tp / positives if scores else np.array([])
    precision = tp / np.maximum(tp + fp, 1e-9) if scores else np.array([])
    for i in range(len(precision) - 2, -1, -1):  # the precision envelope
        precision[i] = max(precision[i], precision[i + 1])
    total = 0.0
    for r in np.linspace(0, 1, 101):
        idx = np.searchsorted(recall, r, side="left")
        total += precision[idx] if idx < len(precision) else 0.0
    return total / 101


def iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax2, bx2) - max(a[0], b[0])), max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)


class Engines:
    def __init__(self):
        from imgrec.engines import EngineRegistry
        from imgrec.settings import Settings

        self.registry = EngineRegistry(Settings.load())

    def run(self, api: str, data: bytes, **params):
        from imgrec import schemas

        return self.registry.get(api).run(data, schemas.spec(api).request(params, image=data)).to_wire()["result"]


def coco_figures(engines: Engines, data: Path, limit: int | None) -> dict:
    """The detector's calibration was fitted on these photos: each photo is scored with a calibration fitted
    on the other four folds (as training/calibrate_detector.py splits them)."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "training"))
    import calibrate_detector as training

    from imgrec.engines import detector as detector_module

    raw_scores, in_photo, photo_of = training.candidates(data)
    fold_of_photo = np.random.default_rng(0).permutation(photo_of.max() + 1) % 5
    shipped = detector_module._calibration
    names = coco_names(data)
    images = sorted((data / "coco-dev" / "images").glob("*.jpg"))[:limit]
    detections = defaultdict(list)  # class -> [(score, image index, box)]
    truth = defaultdict(list)  # (image index, class) -> [box]
    tp = fp = fn = 0
    latencies = []
    for i, path in enumerate(images):
        train = fold_of_photo[photo_of] != fold_of_photo[i]
        knots = training.isotonic(raw_scores[train], in_photo[train])
        detector_module._calibration = lambda knots=knots: knots
        payload = path.read_bytes()
        width, height = Image.open(path).size
        label_file = data / "coco-dev" / "labels" / f"{path.stem}.txt"
        present = set()
        for line in (label_file.read_text().splitlines() if label_file.exists() else []):
            cls, cx, cy, w, h = line.split()[:5]
            name = names[int(cls)]
            present.add(name)
            truth[(i, name)].append(((float(cx) - float(w) / 2) * width, (float(cy) - float(h) / 2) * height,
                                     float(w) * width, float(h) * height))
        for tag in engines.run("media_tagging_det", payload, threshold=1.0, limit=50, language="en")["tags"]:
            for inst in tag.get("instances", []):
                b = inst["bounding_box"]
                detections[tag["tag"]].append((float(inst["confidence"]), i, (b["top_left_x"], b["top_left_y"],
                                                                             b["width"], b["height"])))
        started = time.perf_counter()
        tags = engines.run("image_tagging", payload, language="en")["tags"]
        latencies.append((time.perf_counter() - started) * 1000)
        tagged = {t["i18n_tag"]["en"] for t in tags} & set(names)
        tp += len(tagged & present)
        fp += len(tagged - present)
        fn += len(present - tagged)
    detector_module._calibration = shipped
    aps = {}
    for name in names:
        positives = sum(len(v) for (img, n), v in truth.items() if n == name)
        if not positives:
            continue
        used: set[tuple[int, int]] = set()
        scores, hits = [], []
        for score, img, box in sorted(detections.get(name, []), key=lambda d: -d[0]):
            gts = truth.get((img, name), [])
            best, best_j = 0.0, -1
            for j, gt in enumerate(gts):
                overlap = iou(box, gt)
                if overlap > best and (img, j) not in used:
                    best, best_j = overlap, j
            hit = best >= 0.5
            if hit:
                used.add((img, best_j))
            scores.append(score)
            hits.append(hit)
        aps[name] = ap101(scores, hits, positives)
    return {"images": len(images), "map50": 100 * float(np.mean(list(aps.values()))),
            "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "latency_ms": latencies}


def imagenet_figure(engines: Engines, data: Path, limit: int | None) -> tuple[float, int]:
    from imgrec.engines.labels import imagenet_classes

    by_wnid = {c.wnid: c for c in imagenet_classes()}
    files = sorted((data / "imagenet-dev").glob("*.JPEG"))[:limit]
    hits = 0
    for path in files:
        wnid, _, lemma = path.stem.partition("_")
        wanted = {by_wnid[wnid].en.lower(), lemma.replace("_", " ").lower()}
        tags = {t["i18n_tag"]["en"].lower() for t in engines.run("image_tagging", path.read_bytes(), threshold=30.0,
                                                                  language="en")["tags"]}
        hits += bool(tags & wanted)
    return hits / max(len(files), 1), len(files)


def scene_figure(engines: Engines, data: Path, limit: int | None) -> tuple[float, int, dict[str, float], float]:
    """Cross-validated: the shipped scene head was trained on these photos, so each fold's photos are tagged
    by a head trained on the other four folds (swapped into the engine), as training/train_scene_head.py
    splits them. Also the share of the object photos (imagenet-dev) that got a scene tag anyway."""
    sys.path.insert(0, str(ROOT / "training"))
    import train_scene_head as training

    from imgrec.engines.classifier import classifier

    model = classifier(engines.registry.settings.models_dir)
    shipped = model.scene
    files, y = training.dataset(data)
    x_raw = training.embeddings(files)
    fold_of = training.folds(len(y))
    scenes = list(training.SCENES)
    hits, seen, stray, others = defaultdict(int), defaultdict(int), 0, 0
    try:
        for k in range(5):
            model.scene = training.head(x_raw[fold_of != k], y[fold_of != k])
            for index in np.nonzero(fold_of == k)[0]:
                if limit is not None and seen[int(y[index])] >= limit:
                    continue
                tags = {t["i18n_tag"]["en"].lower() for t in engines.run("image_tagging", files[index].read_bytes(),
                                                                          language="en")["tags"]}
                seen[int(y[index])] += 1
                if y[index] < len(scenes):
                    hits[int(y[index])] += bool(tags & SCENE_SYNONYMS[scenes[y[index]]])
                else:
                    others += 1
                    stray += bool(tags & set(training.SCENES))
    finally:
        model.scene = shipped
    per_scene = {scene: hits[i] / max(seen[i], 1) for i, scene in enumerate(scenes)}
    total = sum(seen[i] for i in range(len(scenes)))
    return sum(hits.values()) / max(total, 1), total, per_scene, stray / max(others, 1)


def recapture_figures(engines: Engines, data: Path, limit: int | None) -> dict[str, tuple[float, int]]:
    """Cross-validated like the scene figure: the shipped head was trained on these photos, so each outer
    fold's photos are judged by the engine with a head (and its calibration) fitted on the other folds,
    folds grouped by NUAA subject, as training/train_recapture_head.py splits them."""
    sys.path.insert(0, str(ROOT / "training"))
    import train_recapture_head as training

    engine = engines.registry.get("recapture_detect")
    shipped = (engine.weight, engine.bias, engine.mean, engine.scale)
    files, y, groups, origin = training.dataset(data)
    x_raw = training.features_of(files)
    fold_of = training.group_folds(groups)
    right: dict[str, list[bool]] = defaultdict(list)
    try:
        for k in range(5):
            train = fold_of != k
            (w, b, mean, scale), (a, c) = training.calibrated(x_raw[train], y[train], groups[train], 0.05)
            engine.weight, engine.bias, engine.mean, engine.scale = a * w, a * b + c, mean, scale
            for index in np.nonzero(fold_of == k)[0]:
                if limit is not None and len(right[origin[index]]) >= limit:
                    continue
                suggestion = engines.run("recapture_detect", files[index].read_bytes())["suggestion"]
                right[origin[index]].append((suggestion == "true") == (y[index] == 0))
    finally:
        engine.weight, engine.bias, engine.mean, engine.scale = shipped
    names = {"imagenet-dev": "genuine: imagenet-dev 'true'", "coco-dev": "genuine: coco-dev 'true'",
             "live-face": "genuine: live faces 'true'", "screen": "screens not 'true'",
             "print-face": "printed faces not 'true'"}
    return {names[k]: (float(np.mean(v)), len(v)) for k, v in right.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per set (a quick look)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: latencies as a single worker sees them
    engines = Engines()
    engines.registry.analyser.capacity = 0  # every figure from a fresh analysis pass
    coco = coco_figures(engines, args.data, args.limit)
    imagenet, n_imagenet = imagenet_figure(engines, args.data, args.limit)
    scene, n_scene, per_scene, stray = scene_figure(engines, args.data, args.limit)
    recapture = recapture_figures(engines, args.data, args.limit)
    rows = [
        ("coco-dev", f"media-tagging-det mAP@0.5 (threshold 1, limit 50), {coco['images']} photos",
         f"{coco['map50']:.1f}", "NanoDet-m mAP@0.5:0.95 20.6, YOLOv5n mAP@0.5 45.7 (COCO val2017)"),
        ("coco-dev", "image tagging v2, default threshold: precision of COCO names (CV)", f"{coco['precision']:.3f}",
         "goal >= 0.85"),
        ("coco-dev", "image tagging v2, default threshold: recall of COCO names (CV)", f"{coco['recall']:.3f}",
         "goal >= 0.70"),
        ("imagenet-dev", f"class among v2 tags at threshold 30, {n_imagenet} photos", f"{imagenet:.3f}",
         "goal >= 0.75; EfficientNet-Lite0 top-1 75.1 on ImageNet val"),
        ("scene-dev", f"a tag naming the scene, {n_scene} photos, 5-fold cross-validated", f"{scene:.3f}",
         "goal >= 0.70 (" + ", ".join(f"{k} {v:.2f}" for k, v in per_scene.items()) + ")"),
        ("imagenet-dev", "object photos given a scene tag anyway (cross-validated)", f"{stray:.3f}", "lower is better"),
    ]
    for name, (value, count) in recapture.items():
        rows.append(("recapture", f"{name}, {count} photos, cross-validated", f"{value:.3f}",
                     "goal >= 0.80" if "printed" in name else "goal >= 0.90"))
    rows.append(("latency", "image tagging v2 per photo, one core (median, COCO photos)",
                 f"{statistics.median(coco['latency_ms']):.0f} ms", ""))
    width = max(len(r[1]) for r in rows)
    print(f"{'set':13s} {'figure':{width}s} {'value':>8s}  published / goal")
    for row in rows:
        print(f"{row[0]:13s} {row[1]:{width}s} {row[2]:>8s}  {row[3]}")


if __name__ == "__main__":
    main()
