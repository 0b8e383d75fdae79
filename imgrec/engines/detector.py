"""General object detection: NanoDet (COCO, 80 classes) converted to ONNX at set-up, run with onnxruntime.

Input: the photo letterboxed to 416x416 keeping its aspect ratio (stretching turns cats into people),
BGR, normalised with NanoDet's mean/std. Output per stride (8/16/32): sigmoid class scores and 4 x 11-bin
distance distributions (GFL); we take the expected distance, map boxes back to the original pixels and keep
the best box per object with per-class NMS. One session per process; onnxruntime runs it on one thread by
default, so the service's worker threads scale across cores.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from imgrec.schemas.errors import ApiError

from .base import WEIGHTS
from .labels import COCO

log = logging.getLogger("imgrec.engines.detector")
INPUT = 416
STRIDES = (8, 16, 32)
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)
BINS = 11
# Below this the detector's answers are noise on COCO; the APIs' thresholds filter further.
MIN_SCORE = 0.2


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


class NanoDet:
    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
        import cv2

        h, w = rgb.shape[:2]
        scale = INPUT / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.zeros((INPUT, INPUT, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
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
        all_boxes = np.concatenate(boxes) / scale
        all_scores, all_classes = np.concatenate(scores), np.concatenate(classes)
        h, w = rgb.shape[:2]
        all_boxes[:, [0, 2]] = all_boxes[:, [0, 2]].clip(0, w)
        all_boxes[:, [1, 3]] = all_boxes[:, [1, 3]].clip(0, h)
        detections = []
        for class_id in np.unique(all_classes):
            idx = np.nonzero(all_classes == class_id)[0]
            for k in nms(all_boxes[idx], all_scores[idx]):
                i = idx[k]
                x1, y1, x2, y2 = (float(v) for v in all_boxes[i])
                if x2 - x1 >= 1 and y2 - y1 >= 1:
                    detections.append(Detection(int(class_id), float(all_scores[i]), x1, y1, x2, y2))
        detections.sort(key=lambda d: -d.score)
        return detections


_lock = threading.Lock()
CALIBRATION = WEIGHTS / "detector_calibration.npz"


@lru_cache(maxsize=1)
def _calibration() -> tuple[np.ndarray, np.ndarray]:
    with np.load(CALIBRATION) as knots:
        return knots["raw"], knots["probability"]


def calibrated(score: float) -> float:
    """NanoDet's raw score as the probability that the class is in the photo (training/calibrate_detector.py,
    isotonic on COCO photos): the confidence every API reports for a detector object. Monotone, so boxes and
    rankings are NanoDet's own; ties within a step keep the raw order through a negligible raw term."""
    raw, probability = _calibration()
    return float(np.interp(score, raw, probability, left=probability[0], right=probability[-1])) + 1e-4 * score


@lru_cache(maxsize=2)
def _load(path: str) -> NanoDet:
    return NanoDet(Path(path))


def detector(models_dir: Path | None = None) -> NanoDet:
    """The detector converted into `models_dir` (Settings' models_dir), shared per process, or AIS.0007 when
    the model was not set up (scripts/setup.sh converts it)."""
    if models_dir is None:
        from ..models.fetch import default_models_dir

        models_dir = default_models_dir()
    path = Path(models_dir) / "nanodet.onnx"
    if not path.exists():
        log.error("detector model %s is missing: run scripts/setup.sh (python -m imgrec.models.fetch)", path)
        raise ApiError.of("AIS.0007", "detector model not set up")
    with _lock:
        return _load(str(path))
