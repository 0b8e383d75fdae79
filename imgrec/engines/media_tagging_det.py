"""Media tagging (detection): located things only (detector objects, faces, codes) with integer boxes."""
from __future__ import annotations

from imgrec.schemas import media_tagging_det as schema
from imgrec.schemas.common import ParsedRequest
from imgrec.schemas.shapes import BoxInt, InstanceInt

from .analysis import Analyser, tag_items


class MediaTaggingDetEngine:
    api = schema.SPEC.name

    def __init__(self, analyser: Analyser | None = None):
        self.analyser = analyser or Analyser()

    def run(self, data: bytes, request: ParsedRequest) -> schema.Response:
        analysis = self.analyser.analyse(data, schema.SPEC.image, request.tenant)
        tags = tag_items(analysis, request.params, schema.Tag, InstanceInt, BoxInt,
                         with_i18n_type=False, objects_only=True)
        return schema.Response(result=schema.Result(tags=tags))
