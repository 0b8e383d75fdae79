"""Image tagging V2: detector objects (with float boxes as `instances`) plus scene and concept tags."""
from __future__ import annotations

from schemas import image_tagging as schema
from schemas.common import ParsedRequest
from schemas.shapes import BoxFloat, InstanceFloat

from .analysis import analyse, tag_items


class ImageTaggingEngine:
    api = schema.SPEC.name

    def __init__(self, plugins: tuple = ()):
        self.plugins = plugins

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        tags = tag_items(analyse(data, schema.SPEC.image, plugins=self.plugins), request.params, schema.Tag, InstanceFloat, BoxFloat)
        return schema.Response(result=schema.Result(tags=tags))
