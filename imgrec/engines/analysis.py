"""What the tagging and main-object engines see in one image: detector objects, faces and pixel tags.

Computed once per image by an `Analyser` shared by those engines, and formatted per endpoint by
tagging.py and main_object_detection.py.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict, defaultdict
from concurrent.futures import Future
from dataclasses import dataclass

from pathlib import Path

from imgrec.schemas.common import ImageInfo
from imgrec.schemas.similar import Fingerprint

from .classifier import MODEL_FILE as CLASSIFIER_FILE
from .classifier import classifier
from .detector import MODEL_FILE as DETECTOR_FILE
from .detector import Detection, calibrated, detector, presence
from . import fingerprint
from .imaging import work_image
from .faces import face_models
from .scene import Candidate, code_tags, colour_tags, document_tags, face_tags, lighting_tags


@dataclass
class Analysis:
    width: int  # of the original image (boxes are in its pixels)
    height: int
    candidates: list[Candidate]  # objects first, then scene/concept tags
    fingerprint: Fingerprint | None = None  # for near-duplicates, from the same embedding (with the scene)


def analysis_problem(settings) -> str | None:
    """The analysing engines need the converted detector and classifier, and any bring-your-own models."""
    from imgrec.models.fetch import model_problem

    for model in (Path(settings.models_dir) / DETECTOR_FILE, Path(settings.models_dir) / CLASSIFIER_FILE):
        if problem := model_problem(model):  # missing, or not the file the set-up converted (SHA-256 pin)
            return problem
    for name, model in (("classifier", settings.models.classifier), ("detector", settings.models.detector)):
        for path in (model.path, model.labels) if model is not None else ():
            if not Path(path).is_file():
                return f"[models.{name}] file {path} does not exist"
    return None


def object_candidates(detections: list[Detection], scale: float, width: float, height: float) -> list[Candidate]:
    """One candidate per detected class: its confidence the probability that the class is in the photo
    (detector.presence), each box with its own calibrated confidence. `width`/`height`: the detector's image."""
    by_class: dict[int, list[Detection]] = defaultdict(list)
    for d in detections:
        by_class[d.class_id].append(d)
    out = []
    for class_id, items in by_class.items():
        en, zh, category = items[0].label
        boxes = [(d.x1 * scale, d.y1 * scale, d.width * scale, d.height * scale, round(calibrated(d.score) * 100, 2))
                 for d in items]
        confidence = round(presence(items, detections, width, height) * 100, 2)
        out.append(Candidate(en, zh, category, "object", confidence, boxes))
    return out


class Analyser:
    """The bring-your-own models and the analyses of the images seen last, shared by the five engines
    that analyse (tagging v1/v2, media tagging with and without boxes, main object).

    A catalog run asks those APIs about one image one after another, and each needs the same decode,
    detector, face and pixel pass: it runs once per image (keyed by a digest of the bytes) and the others
    reuse it. A request that arrives while the same image is being analysed waits for that pass instead of
    repeating it. Failures are not kept: the next request tries again. Analyses are treated as read-only.
    Passes are shared only within one tenant (the service's caller project): another project's quick answer
    must not tell anyone that this exact image was just sent by someone else.
    """

    def __init__(self, plugins: tuple = (), capacity: int = 256, models_dir: Path | None = None):
        self.plugins = tuple(plugins)
        self.models_dir = models_dir
        self.capacity = capacity  # an Analysis is a few KB: no pixels are kept
        self._entries: OrderedDict[tuple[str, bytes, bool], Future] = OrderedDict()
        self._lock = threading.Lock()
        self.passes = 0  # analyses computed (the rest were reused): for tests and benchmarks

    def analyse(self, data: bytes, info: ImageInfo, tenant: str = "", with_scene: bool = True) -> Analysis:
        """`info`: the header, already checked against the calling API's limits. `with_scene=False` skips
        the pixel tags (main-object detection reads only objects and faces); such a caller may get a full
        analysis when one is at hand."""
        keys = [_entry(tenant, data, True)] if with_scene else [_entry(tenant, data, True),
                                                                _entry(tenant, data, False)]
        with self._lock:
            for key in keys:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    break
            else:
                key, found = keys[-1], None
                mine = self._entries[key] = Future()
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        if found is not None:
            return found.result()
        try:
            result = analyse(data, info, with_scene, self.plugins, self.models_dir)
        except BaseException as exc:
            with self._lock:
                if self._entries.get(key) is mine:
                    del self._entries[key]
            mine.set_exception(exc)  # whoever waits on this pass fails as the pass did (same bytes)
            raise
        self.passes += 1
        mine.set_result(result)
        return result

    def fingerprint(self, data: bytes, info: ImageInfo, tenant: str = "") -> Fingerprint:
        """The image's fingerprint: from its analysis when a tagging API just analysed it (no second
        inference), else decoded and classified for it alone (not kept: no tags were asked for)."""
        with self._lock:
            found = self._entries.get(_entry(tenant, data, True))
        if found is not None and found.done() and found.exception() is None and found.result().fingerprint:
            return found.result().fingerprint
        return fingerprint.of_bytes(data, info, self.models_dir)


def _entry(tenant: str, data: bytes, with_scene: bool) -> tuple:
    """The analyser's cache key of one image's pass."""
    return tenant, hashlib.blake2b(data, digest_size=16).digest(), with_scene


def analyse(data: bytes, info: ImageInfo, with_scene: bool = True, plugins: tuple = (),
            models_dir: Path | None = None) -> Analysis:
    rgb, scale = work_image(data, info)
    detections = detector(models_dir).detect(rgb)
    faces = face_models().detect(rgb, upsample=0, with_descriptors=False)
    candidates = object_candidates(detections, scale, rgb.shape[1], rgb.shape[0])
    faces = [type(f)(round(f.x * scale), round(f.y * scale), round(f.w * scale), round(f.h * scale), f.score)
             for f in faces]  # in the original image's pixels, like every box we return
    height, width = rgb.shape[0] * scale, rgb.shape[1] * scale
    candidates += [c for c in face_tags(faces, (height, width)) if with_scene or c.boxes]
    for plugin in plugins:  # bring-your-own ONNX models (plugins.py)
        candidates += [_rescale(c, scale) for c in plugin.candidates(rgb)]
    if with_scene:
        classified, contradicted, embedding = classifier(models_dir).candidates(rgb)
        candidates = merge(weaken(candidates, contradicted), classified)
        candidates += lighting_tags(rgb) + colour_tags(rgb) + document_tags(rgb)
        candidates += [_rescale(c, scale) for c in code_tags(rgb)]
        return Analysis(round(width), round(height), candidates, fingerprint.of_pixels(rgb, embedding, data))
    return Analysis(round(width), round(height), candidates)


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
    """The answer's tags: at or above `threshold`, recognised things by confidence, then the pixel measures
    (colours, darkness...) by theirs; one tag per name in the answer's language (two classes with one name,
    such as two kinds of 球, give the stronger one), at most `limit`."""
    kept = sorted((c for c in candidates if c.confidence >= threshold), key=lambda c: (c.pixel, -c.confidence))
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


