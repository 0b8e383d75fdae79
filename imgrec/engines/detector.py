"""General object detection (COCO, 80 classes): CenterNet, converted to ONNX at set-up, run with onnxruntime.

Two detectors from the same npm package share one interface (`detect(rgb, min_score)` -> `Detection`s in the
photo's pixels, per-class NMS): CenterNet (MobileNetV3, 512 x 512 pixels' worth), which every API uses, and
NanoDet (416 px), kept for the comparison in bench/detectors.py. On coco-dev CenterNet finds more of the
objects present at the same precision (mAP@0.5 51.1 vs 45.8; names tagged at precision 0.85: 73% vs 57%) at
about the same cost.

CenterNet: the photo scaled into 512 x 512 pixels' worth of input keeping its aspect ratio, RGB 0-255 (its
normalisation is folded into the first convolution); its heatmap peaks are decoded here (decode) into boxes in
input pixels; neighbouring peaks of one object duplicate, hence the NMS. NanoDet: letterboxed to
416, BGR with NanoDet's mean/std; per stride (8/16/32) sigmoid class scores and 4 x 11-bin distance
distributions (GFL), decoded to the expected distance. One session per process on one onnxruntime thread,
so the service's worker threads scale across cores.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..models.fetch import CENTERNET_HEADS
from .base import WEIGHTS, converted_model, onnx_session
from .imaging import iou
from .labels import COCO

INPUT = 416  # NanoDet's
CENTERNET_INPUT = 512
MODEL_FILE = "centernet.onnx"  # the detector every API uses
STRIDES = (8, 16, 32)
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
BINS = 11
# Below this the detector's answers are noise on COCO (raw scores; calibrated() maps them to probabilities);
# the APIs' thresholds filter further.
MIN_SCORE = 0.1
SAME_BOX_IOU = 0.85  # two classes' boxes overlapping this much are one object named twice (one_name_per_box)


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float  # 0-1
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def label(self) -> tuple[str, str, str]:
        return COCO[self.class_id]

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.width, self.height




def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> list[int]:
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / (areas[i] + areas[order[1:]] - inter + 1e-9)
        order = order[1:][overlap <= iou]
    return keep


def letterbox(rgb: np.ndarray, side: int, fill: float = 0.0) -> tuple[np.ndarray, float]:
    """The photo scaled to fit side x side keeping its aspect ratio, top-left, padded with `fill`; and the
    scale."""
    scale = side / max(rgb.shape[:2])
    return pasted(rgb, scale, (side, side), fill), scale


def pasted(rgb: np.ndarray, scale: float, shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """A float32 canvas of `shape` (height, width) filled with `fill`, the photo scaled by `scale` at its
    top left."""
    import cv2

    h, w = rgb.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.full((*shape, 3), fill, np.float32)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return canvas


def per_class_nms(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[Detection]:
    """Boxes in the photo's pixels (clipped), the best box per object per class, best first."""
    h, w = rgb.shape[:2]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    detections = []
    for class_id in np.unique(classes):
        idx = np.nonzero(classes == class_id)[0]
        for k in nms(boxes[idx], scores[idx]):
            i = idx[k]
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                detections.append(Detection(int(class_id), float(scores[i]), x1, y1, x2, y2))
    detections.sort(key=lambda d: -d.score)
    return one_name_per_box(detections)


def one_name_per_box(detections: list[Detection], overlap: float = SAME_BOX_IOU) -> list[Detection]:
    """A box that overlaps a stronger box of another class by IoU >= `overlap` is the same object named twice
    (cat / dog, car / truck, bed / person on a texture): it goes. Two things overlapping (a person on a horse,
    a cup on a table) have boxes far apart in shape and stay. `detections`: best first. On coco-dev (five fold
    splits, cross-validated) v2 tagging went from precision 0.867 / recall 0.690 to 0.878 / 0.714; boxes'
    mAP@0.5 from 53.4 to 51.1 (where the stronger name was the wrong one, the right box went with it)."""
    kept: list[Detection] = []
    for d in detections:
        if not any(k.class_id != d.class_id and iou(k.xywh, d.xywh) >= overlap for k in kept):
            kept.append(d)
    return kept


class CenterNet:
    """The graph ends at its heads (imgrec/models/fetch.py): a per-class heatmap and the four box sides at a
    quarter of the input's resolution; decode() finds the peaks as the TF graph did (3x3 local maxima, the
    best 100). The photo is scaled to spend a 512 x 512 letterbox's pixels on itself rather than on padding
    (a 4:3 photo: 576 x 448): on coco-dev mAP@0.5 53.4 vs 52.1 with the square letterbox (both before
    one_name_per_box), at the same cost (bench/detectors.py). An older set-up's graph (fixed 512 x 512) still works, letterboxed."""

    def __init__(self, path: Path):
        self.session = onnx_session(path)
        self.input_name = self.session.get_inputs()[0].name
        dims = self.session.get_inputs()[0].shape[1:3]
        self.fixed = tuple(dims) if all(isinstance(d, int) for d in dims) else None  # an older set-up's graph
        names = [o.name for o in self.session.get_outputs()]
        self.heads = CENTERNET_HEADS
        if set(self.heads) - set(names):
            raise RuntimeError(f"unexpected CenterNet outputs {names}")

    def canvas(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The photo scaled and zero-padded (bottom, right) to multiples of 32 within CENTERNET_INPUT ** 2
        pixels, its long side at most 1.5 x CENTERNET_INPUT, enlarged no more than a letterbox would; and the
        scale."""
        if self.fixed is not None:
            return letterbox(rgb, self.fixed[0])
        h, w = rgb.shape[:2]
        side = CENTERNET_INPUT * 3 // 2
        while side > CENTERNET_INPUT and _up32(side) * _up32(side * min(h, w) / max(h, w)) > CENTERNET_INPUT ** 2:
            side -= 32
        # Enlarging adds no detail, only moves objects' sizes away from training: no more than the letterbox did.
        scale = min(side / max(h, w), max(1.0, CENTERNET_INPUT / max(h, w)))
        return pasted(rgb, scale, (_up32(h * scale), _up32(w * scale))), scale

    def detect(self, rgb: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
        canvas, scale = self.canvas(rgb)
        heat, sides = self.session.run(self.heads, {self.input_name: canvas[None]})
        boxes, scores, classes = decode(heat[0], sides[0], min_score)
        if not len(scores):
            return []
        return per_class_nms(rgb, boxes / scale, scores, classes)


def _up32(n: float) -> int:
    return int(-(-round(n) // 32) * 32)


def decode(heat: np.ndarray, sides: np.ndarray, min_score: float, limit: int = 100, stride: int = 4):
    """CenterNet's peaks: (boxes x1 y1 x2 y2 in input pixels, scores, classes) of the `limit` best cells that
    are the maximum of their 3 x 3 neighbourhood in their class's heatmap and score at least `min_score`.
    `heat`: (H, W, classes); `sides`: (H, W, 4) distances from the cell to the box's left, top, right, bottom."""
    ys, xs, cs = np.nonzero(heat >= min_score)
    scores = heat[ys, xs, cs]
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    peak = np.ones(len(scores), bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                peak &= padded[ys + dy, xs + dx, cs] <= scores
    best = np.nonzero(peak)[0][np.argsort(-scores[peak], kind="stable")[:limit]]
    ys, xs, cs, scores = ys[best], xs[best], cs[best], scores[best]
    d = sides[ys, xs]
    cx, cy = xs * stride, ys * stride
    boxes = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], axis=1).astype(np.float32)
    return boxes, scores, cs.astype(int)


class NanoDet:
    def __init__(self, path: Path):
        self.session = onnx_session(path)
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # Identity/_1/_2: class scores per stride; Identity_3/_4/_5: box distributions per stride.
        self.outputs = [f"Identity{s}:0" for s in ("", "_1", "_2", "_3", "_4", "_5")]
        missing = set(self.outputs) - set(names)
        if missing:
            raise RuntimeError(f"unexpected NanoDet outputs, missing {missing}")
        grids = []
        for stride in STRIDES:
            n = INPUT // stride
            ys, xs = np.divmod(np.arange(n * n), n)
            grids.append(np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=1).astype(np.float32))
        self.grids = grids

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        canvas, scale = letterbox(rgb, INPUT)
        bgr = canvas[..., ::-1]
        tensor = ((bgr - MEAN) / STD).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(tensor, dtype=np.float32), scale

    def detect(self, rgb: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
        tensor, scale = self.preprocess(rgb)
        outs = self.session.run(self.outputs, {self.input_name: tensor})
        boxes, scores, classes = [], [], []
        for level, stride in enumerate(STRIDES):
            cls, reg = outs[level][0], outs[level + 3][0]
            best = cls.max(axis=1)
            keep = np.nonzero(best >= min_score)[0]
            if keep.size == 0:
                continue
            dist = reg[keep].reshape(-1, 4, BINS)
            dist = np.exp(dist - dist.max(axis=2, keepdims=True))
            dist /= dist.sum(axis=2, keepdims=True)
            sides = (dist * np.arange(BINS, dtype=np.float32)).sum(axis=2) * stride  # l, t, r, b
            centre = self.grids[level][keep]
            boxes.append(np.concatenate([centre - sides[:, :2], centre + sides[:, 2:]], axis=1))
            scores.append(best[keep])
            classes.append(cls[keep].argmax(axis=1))
        if not boxes:
            return []
        return per_class_nms(rgb, np.concatenate(boxes) / scale, np.concatenate(scores), np.concatenate(classes))


CALIBRATION = WEIGHTS / "detector_calibration.npz"


@lru_cache(maxsize=1)
def _calibration() -> dict[str, np.ndarray]:
    with np.load(CALIBRATION) as arrays:
        return {name: arrays[name] for name in arrays.files}


def calibrated(score: float) -> float:
    """A box's raw score as the probability that its class is in the photo (training/calibrate_detector.py,
    isotonic on COCO photos): each box's confidence. Monotone, so boxes and rankings are the detector's own;
    ties within a step keep the raw order through a negligible raw term."""
    c = _calibration()
    raw, probability = c["raw"], c["probability"]
    return float(np.interp(score, raw, probability, left=probability[0], right=probability[-1])) + 1e-4 * score


class Evidence(NamedTuple):
    """What the classifier's pass over the same photo says about the detector's classes
    (classifier.Classifier.evidence)."""
    photograph: float  # the photograph head's logit: below 0, a texture, chart, scan, star field or graphic
    mass: dict[str, float]  # the belief on each COCO word's ImageNet classes (only the words ImageNet covers)


# The photograph logit counts only below this: among photographs how photographic one looks says nothing
# of its objects (a hinge; fitted linearly it cut true tags on COCO photos), while a picture that is no
# photograph holds none of COCO's things.
PHOTOGRAPH_HINGE = 0.0


def presence_features(group: list[Detection], detections: list[Detection], width: float, height: float,
                      evidence: Evidence) -> np.ndarray:
    """What says a class is in the photo, beyond its best box's score: the runner-up box, how many boxes, the
    largest box's share of the photo, the photo's best score of any class, how many classes were found; and
    the classifier's word on it: how far the picture is from a photograph, and its belief in the class's
    ImageNet classes (where ImageNet has any: "person" and "kite" have none)."""
    scores = sorted((d.score for d in group), reverse=True)
    best = min(max(scores[0], 1e-3), 1 - 1e-3)
    area = max(d.width * d.height for d in group) / max(width * height, 1.0)
    mass = evidence.mass.get(COCO[group[0].class_id][0])
    return np.array([np.log(best / (1 - best)), scores[1] if len(scores) > 1 else 0.0, np.log(len(scores)),
                     np.log(area + 1e-4), max(d.score for d in detections),
                     np.log(len({d.class_id for d in detections})),
                     min(max(evidence.photograph, -8.0), PHOTOGRAPH_HINGE),
                     np.log(mass + 1e-3) if mass is not None else 0.0, float(mass is not None)])


def presence(group: list[Detection], detections: list[Detection], width: float, height: float,
             evidence: Evidence) -> float:
    """The probability that `group`'s class (its boxes among `detections`) is in the photo: a logistic model
    of presence_features (training/calibrate_detector.py, fitted on COCO photos and on drawn pictures that
    hold none of COCO's things). The tag's confidence; each box keeps calibrated(score)."""
    return float(presence_probability(_calibration(), presence_features(group, detections, width, height, evidence)))


def presence_probability(model: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The logistic model (mean, scale, weights; training/calibrate_detector.fit) on presence_features, one
    row or many."""
    logits = model["weights"][0] + ((features - model["mean"]) / model["scale"]) @ model["weights"][1:]
    return 1 / (1 + np.exp(-logits))


DETECTORS = {"centernet.onnx": CenterNet, "nanodet.onnx": NanoDet}  # converted file -> its decoder


def detector(models_dir: Path | None = None, model_file: str = MODEL_FILE) -> CenterNet | NanoDet:
    """The detector converted into `models_dir` (Settings' models_dir), shared per process, or AIS.0007 when
    the model was not set up (scripts/setup.sh converts it)."""
    return converted_model(models_dir, model_file, DETECTORS[model_file])
