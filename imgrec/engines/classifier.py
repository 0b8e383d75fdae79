"""The 1000-class ImageNet classifier (EfficientNet-Lite0) and the scene head on its embedding.

Tags it gives, each with a confidence that is a probability in percent:
- the likeliest classes, by name ("Golden Retriever", "espresso"), softmax probability;
- broader tags summing their classes' probabilities: a parent ("dog" for every breed, "fruit", "boat"),
  and the COCO word where a class is one of COCO's 80 (so "dog" or "laptop" is the very tag the detector
  gives; analysis.py merges the two);
- a scene ("sea", "mountain", "forest", "street", "buildings", "glacier") from a small softmax head on the
  classifier's 1280-d embedding, trained by training/train_scene_head.py; its "other" class (photos of
  objects) keeps scene tags off close-ups.
Evidence for the detector's tags (detector.Evidence): the belief it puts on each COCO word's ImageNet
classes, and the photograph head's logit (training/train_photo_head.py): is this a photograph of the everyday
world, or a texture, chart, scan, star field or graphic, where COCO's things are not to be found.
The model is converted at set-up (python -m imgrec.models.fetch) into the models folder.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .base import WEIGHTS, converted_model, onnx_session
from .detector import Evidence
from .labels import CATEGORIES, coco_by_name, imagenet_classes
from .scene import Candidate

MODEL_FILE = "efficientnet_lite0.onnx"
SCENE_HEAD = WEIGHTS / "scene_head.npz"
PHOTO_HEAD = WEIGHTS / "photo_head.npz"
MIN_PROBABILITY = 0.01  # tags below 1% are noise at any threshold a caller may ask for
TOP_CLASSES = 10
# The classifier contradicts a detector's animal class when it puts more than this share of its belief on
# animals of other kinds (a tarantula, a tench) ...
OTHER_ANIMALS = 0.5
# ... and less than this on the class's own ImageNet classes. Only for COCO animals ImageNet covers (a
# giraffe, which it lacks, is never contradicted). Round values, checked on coco-dev and imagenet-dev
# (bench/quality.py): no true animal of either contradicted, 46 of 52 false ones on imagenet-dev.
OWN_CLASSES = 0.05
# The softmax is under-confident (a top-1 at 30-60% is right 3 times in 4 on imagenet-dev): its tags use the
# probabilities of logits / TEMPERATURE, the value that minimises the log loss of held-out ImageNet photos
# (training/fit_classifier_temperature.py). The evidence for the detector keeps the raw softmax it was fitted on.
TEMPERATURE = 0.65


class Classification(NamedTuple):
    """One pass of the classifier over a work image."""
    probs: np.ndarray  # (1000,) class probabilities
    embedding: np.ndarray  # (1280,) average-pooled features: tags, scenes, recapture, the fingerprint
    gem: np.ndarray  # (1280,) the same features, generalised-mean pooled: the fingerprint


class Classifier:
    def __init__(self, model: Path, scene_head: Path | None = SCENE_HEAD):
        self.session = onnx_session(model)
        self.classes = imagenet_classes()
        self.temperature = TEMPERATURE
        self.scene = None
        if scene_head is not None and scene_head.is_file():
            head = np.load(scene_head)
            self.scene = (head["weight"], head["bias"], head["mean"], head["scale"], list(head["en"]),
                          list(head["zh"]))
        with np.load(PHOTO_HEAD) as head:
            self.photo = (head["weight"], float(head["bias"]), head["mean"], head["scale"])

    def predict(self, rgb: np.ndarray) -> Classification:
        from imgrec.models.efficientnet import preprocess

        logits, embedding, gem = self.session.run(["logits", "embedding", "gem"], {"input": preprocess(rgb)})
        z = logits[0] - logits[0].max()
        p = np.exp(z)
        return Classification(p / p.sum(), embedding[0], gem[0])

    def scene_probabilities(self, embedding: np.ndarray) -> dict[str, tuple[str, float]]:
        if self.scene is None:
            return {}
        weight, bias, mean, scale, en, zh = self.scene
        z = ((embedding - mean) / scale) @ weight.T + bias
        p = np.exp(z - z.max())
        p /= p.sum()
        return {e: (c, float(q)) for e, c, q in zip(en, zh, p)}

    def evidence(self, predicted: Classification) -> Evidence:
        """What the classification says for or against the detector's classes (detector.presence)."""
        weight, bias, mean, scale = self.photo
        words, index = self._coco_words
        covered = index >= 0
        sums = np.bincount(index[covered], weights=predicted.probs[covered], minlength=len(words))
        return Evidence(float(bias + ((predicted.embedding - mean) / scale) @ weight), dict(zip(words, sums.tolist())))

    @functools.cached_property
    def _coco_words(self) -> tuple[list[str], np.ndarray]:
        """The COCO words ImageNet covers, and each class's index among them (-1: none)."""
        coco, _ = self._coco_index
        words = sorted(set(coco) - {""})
        position = {w: i for i, w in enumerate(words)}
        return words, np.array([position.get(w, -1) for w in coco])

    def contradicted(self, probs: np.ndarray) -> dict[str, float]:
        """COCO animal words the photo's class probabilities speak against -> the share of belief left for
        them (1 - the mass on other animals): a detector's "bird" on a tench is multiplied by it."""
        coco, animal = self._coco_index
        out = {}
        for word in set(coco[animal]) - {""}:
            own = float(probs[coco == word].sum())
            others = float(probs[animal & (coco != word)].sum())
            if others > OTHER_ANIMALS and own < OWN_CLASSES:
                out[word] = 1.0 - others
        return out

    @functools.cached_property
    def _coco_index(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([c.coco or "" for c in self.classes]),
                np.array([c.category == "animal" for c in self.classes]))

    def candidates(self, rgb: np.ndarray) -> tuple[list[Candidate], dict[str, float], np.ndarray]:
        """The classifier's tags, the detector's animal classes it contradicts (`contradicted`), and the
        embedding (for the image's fingerprint)."""
        probs, embedding, _ = self.predict(rgb)
        return *self.tags(probs, embedding), embedding

    def tags(self, probs: np.ndarray, embedding: np.ndarray) -> tuple[list[Candidate], dict[str, float]]:
        """The tags and contradicted detector classes of one prediction (`predict`'s two arrays)."""
        contradicted = self.contradicted(probs)
        probs = tempered(probs, self.temperature)
        out: dict[str, Candidate] = {}

        def add(en: str, zh: str, category: str, kind: str, probability: float) -> None:
            if probability < MIN_PROBABILITY:
                return
            confidence = round(min(probability, 1.0) * 100, 2)
            found = out.get(en)
            if found is None or found.confidence < confidence:
                out[en] = Candidate(en, zh, category, kind, confidence)

        likeliest = np.argsort(-probs)[:TOP_CLASSES]
        for index in likeliest:
            c = self.classes[index]
            add(c.en, c.zh, c.category, c.kind, float(probs[index]))
        parents: dict[tuple[str, str, str], float] = defaultdict(float)
        cocos: dict[str, float] = defaultdict(float)
        for c, p in zip(self.classes, probs):
            if c.parent_en:
                parents[(c.parent_en, c.parent_zh, c.category)] += float(p)
            if c.coco:
                cocos[c.coco] += float(p)
        coco_words = coco_by_name()
        for (en, zh, category), p in parents.items():
            if en not in coco_words:  # a COCO parent is given below, under COCO's own word
                add(en, zh, category, "object", p)
        for name, p in cocos.items():
            en, zh, category = coco_words[name]
            add(en, zh, category, "object", p)
        for en, (zh, p) in self.scene_probabilities(embedding).items():
            if en != "other":
                add(en, zh, "scene", "scene", p)
        top = self.classes[likeliest[0]]
        for name in {top.en, top.parent_en, top.coco and coco_words[top.coco][0]} - {""}:
            if name in out:  # the likeliest class and what it is a kind of: the photo's subject
                out[name].subject = True
        return list(out.values()), contradicted


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The softmax of log(probs) / temperature over the last axis: the same order, sharper below 1."""
    if temperature == 1.0:
        return probs
    z = np.log(np.maximum(probs, 1e-30)) / temperature
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def classifier(models_dir: Path | None = None) -> Classifier:
    """The classifier converted into `models_dir`, shared per process; AIS.0007 when it was not set up."""
    return converted_model(models_dir, MODEL_FILE, Classifier)


assert all(c.category in CATEGORIES for c in imagenet_classes())
