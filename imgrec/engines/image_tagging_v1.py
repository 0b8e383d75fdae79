"""Image tagging V1: numeric confidences and the object / scene / concept type of the V1 reference."""
from __future__ import annotations

from imgrec.schemas import image_tagging_v1 as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.shapes import I18n

from .analysis import Analyser, label, ranked


class ImageTaggingV1Engine:
    api = schema.SPEC.name

    def __init__(self, analyser: Analyser | None = None):
        self.analyser = analyser or Analyser()

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        p = request.params
        analysis = self.analyser.analyse(data, schema.SPEC.image, request.tenant)
        tags = [schema.Tag(confidence=round(c.confidence, 2), tag=label(c, p["language"]), type=c.kind,
                           i18n_tag=I18n(zh=c.zh, en=c.en))
                for c in ranked(analysis.candidates, p["threshold"], p["limit"])]
        return schema.Response(result=schema.Result(tags=tags))
