"""dlib face detection (HOG) and 128-d face descriptors (ResNet, LFW 99.38%), loaded once per process.

Weights come from the PyPI package face-recognition-models; we locate its folder without importing it
(its __init__ needs pkg_resources, which new setuptools no longer ships).
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_lock = threading.Lock()


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
    score: float  # HOG detector score; > 0 means a face
    descriptor: np.ndarray | None = None


class FaceModels:
    def __init__(self) -> None:
        import dlib

        folder = models_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
        # dlib's detector and networks keep scratch state: concurrent calls on one instance corrupt results.
        self._use = threading.Lock()

    def detect(self, rgb: np.ndarray, upsample: int = 0, with_descriptors: bool = True,
               min_side: int = 0) -> list[Face]:
        with self._use:
            return self._detect(rgb, upsample, with_descriptors, min_side)

    def _detect(self, rgb: np.ndarray, upsample: int, with_descriptors: bool, min_side: int) -> list[Face]:
        import dlib

        rects, scores, _ = self.detector.run(rgb, upsample, 0.0)
        faces = []
        h_img, w_img = rgb.shape[:2]
        for rect, score in zip(rects, scores):
            x1, y1 = max(0, rect.left()), max(0, rect.top())
            x2, y2 = min(w_img, rect.right() + 1), min(h_img, rect.bottom() + 1)
            if min(x2 - x1, y2 - y1) < min_side:
                continue
            descriptor = None
            if with_descriptors:
                shape = self.shape_predictor(rgb, dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom()))
                descriptor = np.asarray(self.encoder.compute_face_descriptor(rgb, shape), dtype=np.float32)
            faces.append(Face(x1, y1, x2 - x1, y2 - y1, float(score), descriptor))
        return faces


@lru_cache(maxsize=1)
def _shared() -> FaceModels:
    return FaceModels()


def face_models() -> FaceModels:
    with _lock:  # first load only; later calls hit the cache
        return _shared()
