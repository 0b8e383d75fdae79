"""Media tagging (classification): the same tags as V2; `instances` stays empty, as the reference says."""
from __future__ import annotations

from imgrec.schemas import media_tagging as schema
from imgrec.schemas.common import ParsedRequest

from .analysis import Analyser, tag_items


class MediaTaggingEngine:
    api = schema.SPEC.name

    def __init__(self, analyser: Analyser | None = None):
        self.analyser = analyser or Analyser()

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        tags = tag_items(self.analyser.analyse(data, schema.SPEC.image, request.tenant), request.params, schema.Tag)
        for tag in tags:
            tag.instances = []
        return schema.Response(result=schema.Result(tags=tags))
