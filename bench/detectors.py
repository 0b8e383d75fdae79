"""The two COCO detectors of the npm package on coco-dev: CenterNet (what the APIs use) vs NanoDet vs both.

    .venv/bin/python bench/detectors.py [--data ../shared/eval]

Raw detector output (no calibration, no classifier), min score 0.05; NanoDet letterboxed to 416 x 416, CenterNet
scaled into 512 x 512 pixels' worth of input without padding to a square (CenterNet.canvas):
mAP@0.5 (COCO-style 101-point AP, mean over the classes present) and, per (photo, class) with the class's
best score as a "the class is in the photo" tag, the highest recall any single score threshold reaches at
precision >= 0.85 (the image-tagging goal). The threshold is chosen on these photos, so that recall is an
upper bound of what a calibrated threshold gets (bench/quality.py has the cross-validated figure). Median
detector time per photo on one core.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import ROOT, table
from quality import ap101, coco_names, iou


def presence_recall(found: list[dict[str, float]], present: list[set[str]], precision: float = 0.85) -> float:
    candidates = sorted(((score, name in truth) for per_photo, truth in zip(found, present)
                         for name, score in per_photo.items()), key=lambda c: -c[0])
    total, tp, fp, best = sum(len(p) for p in present), 0, 0, 0.0
    for _, hit in candidates:
        tp, fp = tp + hit, fp + (not hit)
        if tp / (tp + fp) >= precision:
            best = max(best, tp / total)
    return best


def main() -> None:
    from PIL import Image

    from imgrec.engines.detector import Detection, nms
    from imgrec.engines.detector import detector as load_detector
    from imgrec.settings import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval")
    args = parser.parse_args()
    models = Settings.load().models_dir
    detectors = {"CenterNet (512^2 px)": load_detector(models, "centernet.onnx"),
                 "NanoDet (416 px)": load_detector(models, "nanodet.onnx")}
    names = coco_names(args.data)
    paths = sorted((args.data / "coco-dev" / "images").glob("*.jpg"))
    found: dict[str, list[list[Detection]]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    truth: dict[tuple[int, str], list[tuple]] = defaultdict(list)
    present: list[set[str]] = []
    for i, path in enumerate(paths):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        height, width = rgb.shape[:2]
        label_file = args.data / "coco-dev" / "labels" / f"{path.stem}.txt"
        present.append(set())
        for line in label_file.read_text().splitlines() if label_file.exists() else []:
            cls, cx, cy, w, h = (float(v) for v in line.split()[:5])
            present[-1].add(names[int(cls)])
            truth[(i, names[int(cls)])].append(((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height))
        for name, model in detectors.items():
            started = time.perf_counter()
            found[name].append(model.detect(rgb, 0.05))
            seconds[name].append(time.perf_counter() - started)

    def both(a: list[Detection], b: list[Detection]) -> list[Detection]:
        merged = []
        for class_id in {d.class_id for d in a + b}:
            same = [d for d in a + b if d.class_id == class_id]
            boxes = np.array([[d.x1, d.y1, d.x2, d.y2] for d in same])
            merged += [same[k] for k in nms(boxes, np.array([d.score for d in same]))]
        return merged

    first, second = list(detectors)
    found["both, boxes merged by NMS"] = [both(a, b) for a, b in zip(found[first], found[second])]
    rows = []
    for name, per_photo in found.items():
        by_class = defaultdict(list)
        for i, dets in enumerate(per_photo):
            for d in dets:
                by_class[names[d.class_id]].append((d.score, i, (d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1)))
        aps = []
        for cls in names:
            positives = sum(len(v) for (i, n), v in truth.items() if n == cls)
            if not positives:
                continue
            used, scores, hits = set(), [], []
            for score, i, box in sorted(by_class.get(cls, []), key=lambda d: -d[0]):
                overlaps = [(iou(box, gt), j) for j, gt in enumerate(truth.get((i, cls), [])) if (i, j) not in used]
                best, j = max(overlaps, default=(0.0, -1))
                if best >= 0.5:
                    used.add((i, j))
                scores.append(score)
                hits.append(best >= 0.5)
            aps.append(ap101(scores, hits, positives))
        best_scores = [{names[d.class_id]: max(e.score for e in dets if e.class_id == d.class_id) for d in dets}
                       for dets in per_photo]
        time_ms = f"{1000 * statistics.median(seconds[name]):.0f}" if name in seconds else "sum"
        rows.append([name, f"{100 * np.mean(aps):.1f}", f"{presence_recall(best_scores, present):.3f}", time_ms])
    print(table(f"COCO detectors on coco-dev ({len(paths)} photos), raw scores",
                ["detector", "mAP@0.5", "names tagged at precision 0.85 (best threshold)", "ms per photo"], rows))


if __name__ == "__main__":
    main()
