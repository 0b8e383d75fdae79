"""What the engines see in one image: its work image, its classification, and its analysis (detector
objects, faces and pixel tags).

Computed once per image by an `Analyser` shared by the engines, and formatted per endpoint by tagging.py,
main_object_detection.py, recapture_detect.py and celebrity_recognition.py.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, defaultdict
from concurrent.futures import Future
from dataclasses import dataclass

from pathlib import Path

import numpy as np

from imgrec.schemas.common import ImageInfo
from imgrec.schemas.similar import Fingerprint

from .classifier import MODEL_FILE as CLASSIFIER_FILE
from .classifier import Classification, classifier
from .detector import MODEL_FILE as DETECTOR_FILE
from .detector import Detection, Evidence, calibrated, detector, presence
from . import fingerprint
from .imaging import work_image
from .faces import MODEL_FILE as FACES_FILE
from .faces import Face, face_models
from .scene import Candidate, code_tags, colour_tags, document_tags, face_tags, lighting_tags


@dataclass
class Analysis:
    width: int  # of the original image (boxes are in its pixels)
    height: int
    candidates: list[Candidate]  # objects first, then scene/concept tags
    fingerprint: Fingerprint | None = None  # for near-duplicates, from the same embedding (with the scene)


def analysis_problem(settings) -> str | None:
    """The analysing engines need the converted detector, classifier and face detector, and any
    bring-your-own models."""
    from imgrec.models.fetch import model_problem

    for model in (Path(settings.models_dir) / name for name in (DETECTOR_FILE, CLASSIFIER_FILE, FACES_FILE)):
        if problem := model_problem(model):  # missing, or not the file the set-up converted (SHA-256 pin)
            return problem
    for name, model in (("classifier", settings.models.classifier), ("detector", settings.models.detector)):
        for path in (model.path, model.labels) if model is not None else ():
            if not Path(path).is_file():
                return f"[models.{name}] file {path} does not exist"
    return None


def object_candidates(detections: list[Detection], scale: float, width: float, height: float,
                      evidence: Evidence) -> list[Candidate]:
    """One candidate per detected class: its confidence the probability that the class is in the photo
    (detector.presence, with the classifier's `evidence`), each box with its own calibrated confidence.
    `width`/`height`: the detector's image."""
    by_class: dict[int, list[Detection]] = defaultdict(list)
    for d in detections:
        by_class[d.class_id].append(d)
    out = []
    for class_id, items in by_class.items():
        en, zh, category = items[0].label
        boxes = [(d.x1 * scale, d.y1 * scale, d.width * scale, d.height * scale, round(calibrated(d.score) * 100, 2))
                 for d in items]
        confidence = round(presence(items, detections, width, height, evidence) * 100, 2)
        out.append(Candidate(en, zh, category, "object", confidence, boxes))
    return out


class Memo:
    """Results by key, each computed once while it is kept (the last `capacity` keys): a caller asking for a
    result being computed waits for that computation instead of repeating it. Failures are not kept: the next
    caller tries again. Results are shared, so they are treated as read-only."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[tuple, Future] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, key: tuple):
        """The result kept under `key` if it is ready, else None (nothing is computed or waited for)."""
        with self._lock:
            found = self._items.get(key)
        if found is not None and found.done() and found.exception() is None:
            return found.result()
        return None

    def get(self, keys: list[tuple], compute):
        """The result under the first of `keys` that is kept, else `compute()` kept under the last."""
        with self._lock:
            for key in keys:
                found = self._items.get(key)
                if found is not None:
                    self._items.move_to_end(key)
                    break
            else:
                key, found = keys[-1], None
                mine = self._items[key] = Future()
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        if found is not None:
            return found.result()
        try:
            result = compute()
        except BaseException as exc:
            with self._lock:
                if self._items.get(key) is mine:
                    del self._items[key]
            mine.set_exception(exc)  # whoever waits on it fails as it did (same input)
            raise
        mine.set_result(result)
        return result


# Decoded work images kept: the APIs of one image are asked close together, and each is a few MB.
PIXEL_CAPACITY = 4


class Analyser:
    """The bring-your-own models and the work shared by every API that looks at the same image: its decoded
    work image, its classification (the classifier's probabilities and embedding: tags, scenes, recapture and
    the fingerprint read it) and its analysis (detector objects, faces, pixel tags: the five engines that
    analyse, tagging v1/v2, media tagging with and without boxes, main object).

    A catalog run asks several APIs about one image one after another: each piece is computed once per image
    (keyed by a digest of the bytes) and the others reuse it; a request that arrives while a piece is being
    computed waits for it. Shared only within one tenant (the service's caller project): another project's
    quick answer must not tell anyone that this exact image was just sent by someone else.
    """

    def __init__(self, plugins: tuple = (), capacity: int = 256, models_dir: Path | None = None):
        self.plugins = tuple(plugins)
        self.models_dir = models_dir
        self._analyses = Memo(capacity)  # an Analysis is a few KB: no pixels are kept
        self._classified = Memo(capacity)  # 1000 + 2 x 1280 floats
        self._faces = Memo(capacity)
        self._pixels = Memo(min(capacity, PIXEL_CAPACITY))
        self._last_digest: tuple[bytes, bytes] | None = None
        self.passes = 0  # analyses computed (the rest were reused): for tests and benchmarks

    @property
    def capacity(self) -> int:
        return self._analyses.capacity

    @capacity.setter
    def capacity(self, value: int) -> None:  # 0: every call computes afresh (benchmarks of one pass)
        self._analyses.capacity = self._classified.capacity = self._faces.capacity = value
        self._pixels.capacity = min(value, PIXEL_CAPACITY)

    def analyse(self, data: bytes, info: ImageInfo, tenant: str = "", with_scene: bool = True) -> Analysis:
        """`info`: the header, already checked against the calling API's limits. `with_scene=False` skips
        the classifier's tags and the pixel tags (main-object detection reads only objects and faces; their
        confidences are the same either way); such a caller may get a full analysis when one is at hand."""
        full = self._key(tenant, data, "analysis")
        keys = [full] if with_scene else [full, self._key(tenant, data, "objects")]

        def compute() -> Analysis:
            pixels = self.pixels(data, info, tenant)
            predicted = self.classified(data, info, tenant)
            faces = self.faces(data, info, tenant)
            result = analyse(data, pixels, faces, predicted, self.plugins, self.models_dir, with_scene)
            self.passes += 1
            return result

        return self._analyses.get(keys, compute)

    def pixels(self, data: bytes, info: ImageInfo, tenant: str = "") -> tuple[np.ndarray, float]:
        """The image's work image and the factor from its pixels to the original's (`work_image`)."""
        return self._pixels.get([self._key(tenant, data, "pixels")], lambda: _read_only(work_image(data, info)))

    def classified(self, data: bytes, info: ImageInfo, tenant: str = "") -> Classification:
        """The classifier's pass over the work image."""
        return self._classified.get([self._key(tenant, data, "classified")],
                                    lambda: classifier(self.models_dir).predict(self.pixels(data, info, tenant)[0]))

    def _key(self, tenant: str, data: bytes, part: str) -> tuple:
        """The key of one piece of one image's shared work. The digest of the bytes object seen last is kept:
        the APIs of one image ask with the same object, several times each."""
        last = self._last_digest
        if last is not None and last[0] is data:
            digest = last[1]
        else:
            digest = hashlib.blake2b(data, digest_size=16).digest()
            self._last_digest = (data, digest)  # one tuple, replaced whole: safe across threads
        return tenant, digest, part

    def faces(self, data: bytes, info: ImageInfo, tenant: str = "") -> list[Face]:
        """The faces of the work image, in its pixels (no descriptors)."""
        return self._faces.get([self._key(tenant, data, "faces")], lambda: face_models(self.models_dir).detect(
            self.pixels(data, info, tenant)[0], with_descriptors=False))

    def fingerprint(self, data: bytes, info: ImageInfo, tenant: str = "") -> Fingerprint:
        """The image's fingerprint: from its analysis when a tagging API just analysed it, else from its
        classification (computed for it, if no API classified it)."""
        found = self._analyses.peek(self._key(tenant, data, "analysis"))
        if found is not None and found.fingerprint:
            return found.fingerprint
        return fingerprint.of_pixels(self.pixels(data, info, tenant)[0], self.classified(data, info, tenant), data)


def _read_only(pixels: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
    pixels[0].flags.writeable = False  # shared by the engines: one that changed it would change the others'
    return pixels


def analyse(data: bytes, pixels: tuple[np.ndarray, float], faces: list[Face], predicted: Classification,
            plugins: tuple = (), models_dir: Path | None = None, with_scene: bool = True) -> Analysis:
    """One image's analysis from its pieces: `pixels` (its work image and scale), `faces` (in the work image's
    pixels) and `predicted` (its classification: evidence for the detector's classes, and with `with_scene`
    the classifier's own tags, the pixel tags and the fingerprint; without, objects and faces only)."""
    rgb, scale = pixels
    detections = detector(models_dir).detect(rgb)
    faces = [Face(round(f.x * scale), round(f.y * scale), round(f.w * scale), round(f.h * scale), f.score)
             for f in faces if _of_a_person(f, detections)]  # in the original image's pixels, like every box
    model = classifier(models_dir)
    candidates = object_candidates(detections, scale, rgb.shape[1], rgb.shape[0], model.evidence(predicted))
    height, width = rgb.shape[0] * scale, rgb.shape[1] * scale
    candidates += [c for c in face_tags(faces, (height, width)) if with_scene or c.boxes]
    for plugin in plugins:  # bring-your-own ONNX models (plugins.py)
        candidates += [_rescale(c, scale) for c in plugin.candidates(rgb)]
    if not with_scene:
        return Analysis(round(width), round(height), candidates)
    classified, contradicted = model.tags(predicted.probs, predicted.embedding)
    candidates = merge(weaken(candidates, contradicted), classified)
    candidates += lighting_tags(rgb) + colour_tags(rgb) + document_tags(rgb)
    candidates += [_rescale(c, scale) for c in code_tags(rgb)]
    return Analysis(round(width), round(height), candidates, fingerprint.of_pixels(rgb, predicted, data))


# A face is tagged where the detector sees a person around it (its centre inside a person box at least this
# likely): BlazeFace also finds the faces of dogs, otters and hippos (8 of imagenet-dev's 100 animal photos;
# 2 with this rule), and every person's face measured had such a box (bench/faces.py).
FACE_PERSON_MIN = 0.1


def _of_a_person(face: Face, detections: list[Detection]) -> bool:
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    return any(d.label[0] == "person" and calibrated(d.score) >= FACE_PERSON_MIN
               and d.x1 <= cx <= d.x1 + d.width and d.y1 <= cy <= d.y1 + d.height for d in detections)


def merge(located: list[Candidate], classified: list[Candidate]) -> list[Candidate]:
    """One tag per name: where the classifier names what the detector located ("dog", "laptop"), the
    detector's candidate keeps its boxes and its confidence combines the two as independent evidence
    (noisy-OR: 1 - (1 - p_detector)(1 - p_classifier)), so an object both see ranks above one either sees."""
    by_name = {c.en: c for c in located}
    extra = []
    for c in classified:
        found = by_name.get(c.en)
        if found is None:
            extra.append(c)
        else:
            found.confidence = round(100 - (100 - found.confidence) * (100 - c.confidence) / 100, 2)
            found.subject = found.subject or c.subject
    return located + extra


def weaken(located: list[Candidate], contradicted: dict[str, float]) -> list[Candidate]:
    """A detector's class the classifier speaks against keeps only the belief the classifier leaves it, on its
    tag and on each of its boxes (a "bird" at 98% on a tench, the classifier 93% sure of a fish: 6.9%)."""
    for c in located:
        share = contradicted.get(c.en)
        if share is not None:
            c.confidence = round(c.confidence * share, 2)
            c.boxes = [(x, y, w, h, round(conf * share, 2)) for x, y, w, h, conf in c.boxes]
    return located


def _rescale(c: Candidate, scale: float) -> Candidate:
    c.boxes = [(x * scale, y * scale, w * scale, h * scale, conf) for x, y, w, h, conf in c.boxes]
    return c


def ranked(candidates: list[Candidate], threshold: float, limit: int, language: str = "en") -> list[Candidate]:
    """The answer's tags: at or above `threshold`, the photo's subject (the classifier's likeliest class, its
    parent and its COCO word: "dog" 100 before "Bernese mountain dog" 79) first, then recognised things by
    confidence, then the pixel measures (colours, darkness...) by theirs; one tag per name in the answer's
    language (two classes with one name, such as two kinds of 球, give the stronger one), at most `limit`."""
    kept = [c for c in candidates if c.confidence >= threshold]
    subjects = {label(c, language) for c in kept if c.subject}
    kept.sort(key=lambda c: (c.pixel, label(c, language) not in subjects, -c.confidence))
    seen: set[str] = set()
    unique = []
    for c in kept:
        if label(c, language) not in seen:
            seen.add(label(c, language))
            unique.append(c)
    return unique[:limit]


def label(c: Candidate, language: str) -> str:
    return c.zh if language == "zh" else c.en


def clamp_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[float, float, float, float]:
    x, y = max(0.0, x), max(0.0, y)
    return x, y, max(0.0, min(w, width - x)), max(0.0, min(h, height - y))


