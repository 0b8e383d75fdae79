"""The four tagging APIs: one analysis pass per image (analysis.py), formatted as each endpoint answers.

- image tagging V2: every tag, located ones with float boxes as `instances`;
- media tagging: the same tags, `instances` always empty (as the reference says);
- media tagging (det): located things only (detector objects, faces, codes), integer boxes, no i18n_type;
- image tagging V1: numeric confidences and the object / scene / concept type of the V1 reference.
"""
from __future__ import annotations

from typing import ClassVar

from imgrec.schemas import image_tagging, image_tagging_v1, media_tagging, media_tagging_det
from imgrec.schemas.common import ApiSpec, ParsedRequest, fmt_confidence
from imgrec.schemas.shapes import BoxFloat, BoxInt, I18n, InstanceFloat, InstanceInt

from .analysis import Analysis, analysis_problem, clamp_box, label, ranked
from .base import image_info
from .labels import CATEGORIES


class TaggingEngine:
    """V2-style tag items; subclasses say which endpoint and how its boxes look."""

    spec: ClassVar[ApiSpec]
    tag_model: ClassVar[type]
    result_model: ClassVar[type]
    instance_model: ClassVar[type | None] = None  # None: no instances on this endpoint
    box_model: ClassVar[type | None] = None
    with_i18n_type: ClassVar[bool] = True
    objects_only: ClassVar[bool] = False

    def __init__(self, registry):
        self.analyser = registry.analyser

    problem = staticmethod(analysis_problem)

    def run(self, data: bytes, request: ParsedRequest):
        analysis = self.analyser.analyse(data, image_info(data, request, self.spec), request.tenant)
        return self.spec.response(result=self.result_model(tags=self.items(analysis, request.params)))

    def items(self, analysis: Analysis, params: dict) -> list:
        language = params.get("language", "zh")
        pool = analysis.candidates
        if self.objects_only:  # located things only: a tag whose every box is below the threshold is not one
            pool = [c for c in pool if any(box[4] >= params["threshold"] for box in c.boxes)]
        items = []
        for c in ranked(pool, params["threshold"], params["limit"], language):
            zh_type, en_type = CATEGORIES[c.category]
            fields = {"confidence": fmt_confidence(c.confidence), "type": zh_type if language == "zh" else en_type,
                      "tag": label(c, language), "i18n_tag": I18n(zh=c.zh, en=c.en)}
            if self.with_i18n_type:
                fields["i18n_type"] = I18n(zh=zh_type, en=en_type)
            if self.instance_model is not None:
                fields["instances"] = [self._instance(box, analysis) for box in c.boxes if box[4] >= params["threshold"]]
            items.append(self.tag_model(**fields))
        return items

    def _instance(self, box, analysis: Analysis):
        x, y, w, h, conf = box
        x, y, w, h = clamp_box(x, y, w, h, analysis.width, analysis.height)
        digits = None if self.box_model is BoxInt else 2  # the SDK types media-tagging boxes as int
        bounding_box = self.box_model(width=round(w, digits), height=round(h, digits), top_left_x=round(x, digits),
                                      top_left_y=round(y, digits))
        return self.instance_model(bounding_box=bounding_box, confidence=fmt_confidence(conf))


class ImageTaggingEngine(TaggingEngine):
    spec, tag_model, result_model = image_tagging.SPEC, image_tagging.Tag, image_tagging.Result
    instance_model, box_model = InstanceFloat, BoxFloat


class MediaTaggingEngine(TaggingEngine):
    spec, tag_model, result_model = media_tagging.SPEC, media_tagging.Tag, media_tagging.Result


class MediaTaggingDetEngine(TaggingEngine):
    spec, tag_model, result_model = media_tagging_det.SPEC, media_tagging_det.Tag, media_tagging_det.Result
    instance_model, box_model = InstanceInt, BoxInt
    with_i18n_type = False
    objects_only = True


class ImageTaggingV1Engine(TaggingEngine):
    spec, tag_model, result_model = image_tagging_v1.SPEC, image_tagging_v1.Tag, image_tagging_v1.Result

    def items(self, analysis: Analysis, params: dict) -> list:
        return [self.tag_model(confidence=round(c.confidence, 2), tag=label(c, params["language"]), type=c.kind,
                          i18n_tag=I18n(zh=c.zh, en=c.en))
                for c in ranked(analysis.candidates, params["threshold"], params["limit"], params["language"])]
