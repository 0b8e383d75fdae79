"""Main-object detection: one `main_object_box` and the other subjects as `bounding_box` items.

Candidates are detector objects and faces. The main object maximises score x sqrt(area share) x
centrality (a big, central, confident subject wins over a small sharp one at the edge). With no detection
above the threshold, the spectral-residual saliency map (OpenCV) supplies the main box: the bounding box of
the most salient region, its confidence the contrast of saliency inside versus outside it.
"""
from __future__ import annotations

import math

import numpy as np

from imgrec.schemas import main_object_detection as schema
from imgrec.schemas.common import ParsedRequest, fmt_confidence
from imgrec.schemas.shapes import BoxFloat

from .analysis import analysis_problem, clamp_box
from .base import image_info
from .imaging import iou

SALIENCY_SIDE = 256


def saliency_box(rgb: np.ndarray) -> tuple[tuple[float, float, float, float], float] | None:
    import cv2

    h, w = rgb.shape[:2]
    scale = SALIENCY_SIDE / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, saliency = cv2.saliency.StaticSaliencySpectralResidual_create().computeSaliency(small)
    if not ok:
        return None
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 3)
    peak = float(saliency.max())
    if peak <= 0:
        return None
    mask = (saliency >= 0.5 * peak).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count <= 1:
        return None
    best = max(range(1, count), key=lambda i: saliency[labels == i].sum())
    x, y, bw, bh = stats[best][:4]
    inside = saliency[y:y + bh, x:x + bw].mean()
    outside_mask = np.ones_like(mask, bool)
    outside_mask[y:y + bh, x:x + bw] = False
    outside = saliency[outside_mask].mean() if outside_mask.any() else 0.0
    confidence = float(inside / (inside + outside + 1e-9)) * 100
    return (x / scale, y / scale, bw / scale, bh / scale), confidence


class MainObjectDetectionEngine:
    spec = schema.SPEC

    def __init__(self, registry):
        self.analyser = registry.analyser

    problem = staticmethod(analysis_problem)

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        threshold = request.params["threshold"]
        info = image_info(data, request, self.spec)
        a = self.analyser.analyse(data, info, request.tenant, with_scene=False)
        # Subjects: every located object (detector, plug-in detector) and face, with its own confidence.
        boxes = [((x, y, w, h), conf) for c in a.candidates if c.kind == "object" for x, y, w, h, conf in c.boxes]
        candidates = [(b, c) for b, c in boxes if c >= threshold]
        area = float(a.width * a.height) or 1.0

        def weight(item) -> float:
            (x, y, w, h), conf = item
            cx, cy = (x + w / 2) / a.width, (y + h / 2) / a.height
            centrality = 1.0 - min(1.0, math.hypot(cx - 0.5, cy - 0.5) / math.hypot(0.5, 0.5))
            return conf * math.sqrt(w * h / area) * (0.5 + 0.5 * centrality)

        items: list[schema.MainObject] = []
        if candidates:
            main = max(candidates, key=weight)
        else:
            found = saliency_box(self.analyser.pixels(data, info, request.tenant)[0])
            main = found if found and found[1] >= threshold else None
        if main is not None:
            items.append(self._item("main_object_box", main, a.width, a.height))
        for box in sorted(candidates, key=lambda b: -b[1]):
            if main is not None and box is main:
                continue
            if main is not None and iou(box[0], main[0]) > 0.9:
                continue
            items.append(self._item("bounding_box", box, a.width, a.height))
        return schema.Response(result=items)

    @staticmethod
    def _item(label: str, box, width: int, height: int) -> schema.MainObject:
        (x, y, w, h), conf = box
        x, y, w, h = clamp_box(x, y, w, h, width, height)
        return schema.MainObject(label=label, confidence=fmt_confidence(conf),
                                 location=BoxFloat(width=round(w, 2), height=round(h, 2),
                                                   top_left_x=round(x, 2), top_left_y=round(y, 2)))
