"""Bring-your-own models: an ONNX image classifier and an ONNX YOLO-style detector, plugged in by config.

    [models.classifier]
    path = "my-classifier.onnx"      # input (1, 3, S, S) RGB; output (1, C) logits or probabilities
    labels = "my-labels.csv"         # one line per class: en,zh,category  (category: a labels.CATEGORIES key)
    input_size = 224
    mean = [0.485, 0.456, 0.406]     # on 0-1 RGB; defaults are ImageNet's
    std = [0.229, 0.224, 0.225]
    kind = "object"                  # object | scene | concept: how the tags count in V1 tagging

    [models.detector]
    path = "my-yolo.onnx"            # input (1, 3, S, S) RGB 0-1 letterboxed; output (1, N, 5 + C) YOLOv5
    labels = "my-det-labels.csv"     #   (cx, cy, w, h, objectness, classes) or (1, 4 + C, N) YOLOv8
    input_size = 640

Their tags and boxes join the built-in ones in every tagging and main-object answer. The sections are
typed in `imgrec/settings.py` (`ClassifierModel`, `DetectorModel`): a misspelt key fails at load.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import onnx_session
from .labels import CATEGORIES
from .scene import Candidate


@dataclass(frozen=True)
class Label:
    en: str
    zh: str
    category: str


def read_labels(path: Path) -> list[Label]:
    labels = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if not row or row[0].startswith("#"):
                continue
            en, zh, category = (row + ["", "", "concept"])[:3]
            labels.append(Label(en.strip(), zh.strip() or en.strip(), category.strip() if category.strip() in CATEGORIES else "concept"))
    return labels


class OnnxClassifier:
    def __init__(self, path: Path, labels: Path, input_size: int = 224, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), kind: str = "object", top_k: int = 5):
        self.session = onnx_session(path)
        self.labels = read_labels(labels)
        self.size, self.kind, self.top_k = input_size, kind, top_k
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def candidates(self, rgb: np.ndarray) -> list[Candidate]:
        import cv2

        x = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None]
        scores = self.session.run(None, {self.session.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(-1)
        if scores.min() < 0 or abs(scores.sum() - 1) > 1e-3:  # logits -> probabilities
            scores = np.exp(scores - scores.max())
            scores /= scores.sum()
        out = []
        for i in np.argsort(-scores)[: self.top_k]:
            if i < len(self.labels):
                label = self.labels[i]
                out.append(Candidate(label.en, label.zh, label.category, self.kind, round(float(scores[i]) * 100, 2)))
        return out


class OnnxYoloDetector:
    def __init__(self, path: Path, labels: Path, input_size: int = 640, min_score: float = 0.2):
        self.session = onnx_session(path)
        self.labels = read_labels(labels)
        self.size, self.min_score = input_size, min_score

    def candidates(self, rgb: np.ndarray) -> list[Candidate]:
        from .detector import letterbox, nms

        canvas, scale = letterbox(rgb, self.size, fill=114)  # YOLO's grey padding
        x = (canvas / 255.0).transpose(2, 0, 1)[None]
        out = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]
        n_classes = len(self.labels)
        if out.shape[0] == 4 + n_classes and out.shape[1] != 4 + n_classes:  # YOLOv8: (4 + C, N)
            out = out.T
            boxes, scores = out[:, :4], out[:, 4:]
        else:  # YOLOv5: (N, 5 + C)
            boxes, scores = out[:, :4], out[:, 5:] * out[:, 4:5]
        best, classes = scores.max(axis=1), scores.argmax(axis=1)
        keep = best >= self.min_score
        boxes, best, classes = boxes[keep], best[keep], classes[keep]
        xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1) / scale
        grouped: dict[int, Candidate] = {}
        for class_id in np.unique(classes):
            idx = np.nonzero(classes == class_id)[0]
            for k in nms(xyxy[idx], best[idx]):
                i = idx[k]
                label = self.labels[int(class_id)]
                x1, y1, x2, y2 = (float(v) for v in xyxy[i])
                cand = grouped.setdefault(int(class_id), Candidate(label.en, label.zh, label.category, "object", 0.0))
                cand.boxes.append((x1, y1, x2 - x1, y2 - y1, round(float(best[i]) * 100, 2)))
                cand.confidence = max(cand.confidence, round(float(best[i]) * 100, 2))
        return list(grouped.values())


def load_plugins(models) -> list:
    """Build the configured plug-in models (`Settings.models`; paths already resolved by Settings)."""
    plugins: list = []
    if models.classifier is not None:
        c = models.classifier
        plugins.append(OnnxClassifier(c.path, c.labels, c.input_size, c.mean, c.std, c.kind, c.top_k))
    if models.detector is not None:
        d = models.detector
        plugins.append(OnnxYoloDetector(d.path, d.labels, d.input_size, d.min_score))
    return plugins
