"""Celebrity recognition against a configured gallery: one sub-folder per person, photos inside.

Each gallery photo contributes the descriptor of its largest face. A query face (at least 40x40 px, as the
reference requires) is matched to the nearest gallery descriptor; the Euclidean distance d becomes a
confidence with a logistic curve centred on dlib's same-person distance (0.6): d=0.6 -> 0.5, d=0.45 -> 0.95.
The default threshold 0.9 thus keeps matches at d <= ~0.49. An empty gallery gives an empty result.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgrec.schemas import celebrity_recognition as schema
from imgrec.schemas.common import ANY_IMAGE, ParsedRequest, inspect_image
from imgrec.schemas.errors import ApiError

from .base import folder_problem, image_info
from .imaging import decode
from .faces import MODEL_FILE as FACES_FILE
from .faces import face_models

log = logging.getLogger("imgrec.engines.celebrity")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# A gallery photo is read at most this large (decoding a 10000-px photo is wasteful). Queries use the work
# image every API of the image shares (imaging.WORK_SIDE) and its faces.
WORK_SIDE = 1600
CONFIDENCE_SLOPE = 0.05


def confidence_from_distance(distance: float, match_distance: float) -> float:
    return 1.0 / (1.0 + math.exp((distance - match_distance) / CONFIDENCE_SLOPE))


@dataclass
class Gallery:
    labels: list[str]
    descriptors: np.ndarray  # (n, 128)

    @classmethod
    def empty(cls) -> "Gallery":
        return cls([], np.zeros((0, 128), dtype=np.float32))

    @classmethod
    def load(cls, folder: Path | None, models: Path | None = None) -> "Gallery":
        if folder is None:
            return cls.empty()
        root = folder.resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"celebrity gallery {folder} is not a folder")
        models = face_models(models)
        labels, descriptors = [], []
        for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
            for photo in sorted(person.iterdir()):
                # Files only, inside the gallery (no symlinks leading out of it).
                if photo.suffix.lower() not in PHOTO_SUFFIXES or photo.is_symlink() or not photo.is_file():
                    continue
                try:
                    data = photo.read_bytes()
                    rgb = decode(data, inspect_image(data, ANY_IMAGE), max_side=WORK_SIDE)
                except ApiError as err:
                    log.warning("gallery photo %s skipped: %s", photo.name, err.code)
                    continue
                rgb, _ = _downscale(rgb)
                faces = models.detect(rgb)
                if not faces:
                    log.warning("gallery photo %s/%s has no detectable face", person.name, photo.name)
                    continue
                largest = max(faces, key=lambda f: f.w * f.h)
                labels.append(person.name)
                descriptors.append(largest.descriptor)
        log.info("celebrity gallery: %d faces of %d people", len(labels), len(set(labels)))
        return cls(labels, np.stack(descriptors) if descriptors else cls.empty().descriptors)


def _downscale(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    import cv2

    side = max(rgb.shape[:2])
    if side <= WORK_SIDE:
        return rgb, 1.0
    scale = WORK_SIDE / side
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


class CelebrityRecognitionEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        settings = registry.settings.celebrity
        self.match_distance = settings.match_distance
        self.models_dir = registry.settings.models_dir
        self.gallery = Gallery.load(settings.gallery, self.models_dir)
        self.analyser = registry.analyser

    @staticmethod
    def problem(settings) -> str | None:
        from imgrec.models.fetch import model_problem

        return (folder_problem(settings.celebrity.gallery, "[celebrity] gallery")
                or model_problem(Path(settings.models_dir) / FACES_FILE))

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        threshold = request.params["threshold"]
        info = image_info(data, request, self.spec)
        rgb, scale = self.analyser.pixels(data, info, request.tenant)  # work pixels -> original pixels: scale
        if not self.gallery.labels:  # decoded all the same: damaged input is refused
            return schema.Response(result=[])
        min_side = math.ceil(schema.MIN_FACE_SIDE / scale)
        faces = [f for f in self.analyser.faces(data, info, request.tenant) if min(f.w, f.h) >= min_side]
        results = []
        for face in face_models(self.models_dir).describe(rgb, faces):
            distances = np.linalg.norm(self.gallery.descriptors - face.descriptor, axis=1)
            best = int(np.argmin(distances))
            confidence = confidence_from_distance(float(distances[best]), self.match_distance)
            if confidence < threshold:
                continue
            detail = schema.FaceDetail(h=round(face.h * scale), w=round(face.w * scale), x=round(face.x * scale),
                                       y=round(face.y * scale))
            results.append(schema.Celebrity(confidence=round(confidence, 6), face_detail=detail,
                                            label=self.gallery.labels[best]))
        results.sort(key=lambda c: -c.confidence)
        return schema.Response(result=results)

