"""Scene and concept tags computed from pixels, each with a confidence that states what it measures.

- colours: share of the image's pixels in a named colour (HSV rules on a 96-px thumbnail); confidence =
  that share in percent, so "Blue 42" means 42% of the picture is blue.
- low light: how far the mean luminance sits below 70/255 (0 at 70, 100 at black).
- black and white: how far the mean chroma sits below a near-grey level (100 for exactly grey pixels).
- portrait / group photo: from dlib's face detector; logistic of its detection margin.
- QR code / barcode: OpenCV's detectors; 99 when the code decodes, 60 when it is only located.
- document: share of paper-white background times text-like edge density, for scans and screenshots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Candidate:
    en: str
    zh: str
    category: str  # key of labels.CATEGORIES
    kind: str  # object | scene | concept (the V1 tagging "type")
    confidence: float  # 0-100
    boxes: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # x, y, w, h, conf 0-100
    # A measure of the pixels (a colour's share, darkness, greyness, text edges), not a probability that
    # the photo shows something: it ranks after every recognised object and scene, whatever its value.
    pixel: bool = False
    # What the whole photo is of: the classifier's likeliest class, ranked first when the answer holds it
    # ("banjo" before the "person" playing it; the detector names everything in the photo, the classifier
    # what it is a photo of).
    subject: bool = False


COLOURS = {  # name -> (en, zh)
    "red": ("Red", "红色"), "orange": ("Orange", "橙色"), "yellow": ("Yellow", "黄色"), "green": ("Green", "绿色"),
    "cyan": ("Cyan", "青色"), "blue": ("Blue", "蓝色"), "purple": ("Purple", "紫色"), "pink": ("Pink", "粉色"),
    "brown": ("Brown", "棕色"), "black": ("Black", "黑色"), "white": ("White", "白色"), "gray": ("Gray", "灰色"),
}
MIN_COLOUR_SHARE = 0.12


def _thumbnail(rgb: np.ndarray, side: int = 96) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def colour_shares(rgb: np.ndarray) -> dict[str, float]:
    import cv2

    hsv = cv2.cvtColor(_thumbnail(rgb), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    h, s, v = hsv[:, 0] * 2.0, hsv[:, 1] / 255.0, hsv[:, 2] / 255.0  # hue in degrees
    names = np.empty(len(h), dtype=object)
    achromatic = s < 0.18
    names[achromatic & (v < 0.22)] = "black"
    names[achromatic & (v >= 0.22) & (v < 0.78)] = "gray"
    names[achromatic & (v >= 0.78)] = "white"
    chroma = ~achromatic
    names[chroma & (v < 0.18)] = "black"
    lit = chroma & (v >= 0.18)
    bands = [(15, "red"), (40, "orange"), (68, "yellow"), (160, "green"), (195, "cyan"), (255, "blue"),
             (290, "purple"), (335, "pink"), (361, "red")]
    lower = 0.0
    for upper, name in bands:
        names[lit & (h >= lower) & (h < upper)] = name
        lower = upper
    # Dark, muted oranges and reds read as brown.
    names[lit & (h >= 0) & (h < 45) & (v < 0.55) & (s < 0.75)] = "brown"
    values, counts = np.unique(names.astype(str), return_counts=True)
    return {str(k): float(c) / len(h) for k, c in zip(values, counts)}


def colour_tags(rgb: np.ndarray) -> list[Candidate]:
    return [Candidate(COLOURS[name][0], COLOURS[name][1], "color", "concept", round(share * 100, 2), pixel=True)
            for name, share in sorted(colour_shares(rgb).items(), key=lambda kv: -kv[1])
            if share >= MIN_COLOUR_SHARE and name in COLOURS]


def lighting_tags(rgb: np.ndarray) -> list[Candidate]:
    import cv2

    thumb = _thumbnail(rgb, 256)
    luma = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    tags = []
    mean = float(luma.mean())
    if mean < 70:
        tags.append(Candidate("Low light", "低光照", "scene", "scene", round((1 - mean / 70) * 100, 2), pixel=True))
    hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)
    chroma = float(hsv[..., 1].astype(np.float32).mean() / 255.0)
    if chroma < 0.06:
        tags.append(Candidate("Black and white", "黑白", "concept", "concept", round((1 - chroma / 0.06) * 100, 2),
                              pixel=True))
    return tags


# A code found but not decoded is seldom a code: OpenCV's QR detector finds finder-like patterns in 12 of
# the 328 imagenet-dev and coco-dev photos (none holds a code, none decodes). Below the tagging default (60).
UNDECODED_CODE = 30.0


def code_tags(rgb: np.ndarray) -> list[Candidate]:
    """QR codes and barcodes: 99 where one decodes, UNDECODED_CODE where a detector sees one it cannot read."""
    import cv2

    tags = []
    gray = cv2.cvtColor(_thumbnail(rgb, 1024), cv2.COLOR_RGB2GRAY)
    try:
        text, points, _ = cv2.QRCodeDetector().detectAndDecode(gray)
    except cv2.error:
        text, points = "", None
    if points is not None:
        tags.append(Candidate("QR code", "二维码", "concept", "concept", 99.0 if text else UNDECODED_CODE,
                              _box_of(points, rgb.shape, gray.shape)))
    try:
        detector = cv2.barcode.BarcodeDetector()
        ok, decoded, _, corners = detector.detectAndDecodeWithType(gray)
    except (cv2.error, AttributeError):
        ok, decoded, corners = False, (), None
    if ok and corners is not None and len(corners):
        found = any(decoded) if decoded is not None else False
        tags.append(Candidate("Barcode", "条形码", "concept", "concept", 99.0 if found else UNDECODED_CODE,
                              _box_of(corners[0], rgb.shape, gray.shape)))
    return tags


def _box_of(points, full_shape, small_shape) -> list[tuple[float, float, float, float, float]]:
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    scale = full_shape[1] / small_shape[1]
    x1, y1 = pts.min(axis=0) * scale
    x2, y2 = pts.max(axis=0) * scale
    return [(float(x1), float(y1), float(x2 - x1), float(y2 - y1), 99.0)]


def document_tags(rgb: np.ndarray) -> list[Candidate]:
    import cv2

    thumb = _thumbnail(rgb, 512)
    hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)
    paper = float(((hsv[..., 1] < 40) & (hsv[..., 2] > 200)).mean())
    if paper < 0.45:
        return []
    gray = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 80, 200)
    density = float((edges > 0).mean())
    # Printed text puts 3-20% edge pixels on a page; photos of white walls have almost none.
    text_like = min(1.0, density / 0.03) if density < 0.25 else 0.0
    confidence = paper * text_like * 100
    return [Candidate("Document", "文档", "concept", "concept", round(confidence, 2), pixel=True)] \
        if confidence >= 20 else []


def face_tags(faces, shape) -> list[Candidate]:
    if not faces:
        return []
    area = shape[0] * shape[1]
    probability = [f.score for f in faces]  # the face detector's probability
    boxes = [(float(f.x), float(f.y), float(f.w), float(f.h), round(p * 100, 2)) for f, p in zip(faces, probability)]
    tags = [Candidate("Face", "人脸", "human", "object", round(max(probability) * 100, 2), boxes)]
    if len(faces) >= 3:
        tags.append(Candidate("Group photo", "合影", "scene", "scene",
                              round(float(np.mean(sorted(probability)[-3:])) * 100, 2)))
    else:
        largest = max(faces, key=lambda f: f.w * f.h)
        share = largest.w * largest.h / area
        if share >= 0.02:
            p = probability[faces.index(largest)]
            tags.append(Candidate("Portrait", "人像", "scene", "scene", round(p * min(1.0, share / 0.05) * 100, 2)))
    return tags
