"""Image tagging V2: detector objects (with float boxes as `instances`) plus scene and concept tags."""
from __future__ import annotations

from imgrec.schemas import image_tagging as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.shapes import BoxFloat, InstanceFloat

from .analysis import Analyser, tag_items


class ImageTaggingEngine:
    api = schema.SPEC.name

    def __init__(self, analyser: Analyser | None = None):
        self.analyser = analyser or Analyser()

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        analysis = self.analyser.analyse(data, schema.SPEC.image, request.tenant)
        tags = tag_items(analysis, request.params, schema.Tag, InstanceFloat, BoxFloat)
        return schema.Response(result=schema.Result(tags=tags))
