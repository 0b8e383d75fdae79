"""media_tagging response -> tags (+ detections from instances)."""
from __future__ import annotations

from ._tags import tag_rows


def rows(response, ctx) -> dict[str, list[dict]]:
    return tag_rows(response.result.tags, ctx)
