"""Shared by the three tagging normalizers: a tag item -> a `tags` row, its instances -> `detections`."""
from __future__ import annotations

from typing import Any


def tag_rows(tags: list[Any], ctx) -> dict[str, list[dict]]:
    language = ctx.params.get("language", "zh")
    tag_rows, detection_rows = [], []
    for rank, item in enumerate(tags, start=1):
        i18n_type = getattr(item, "i18n_type", None)
        tag_rows.append({**ctx.base(), "tag": item.tag, "tag_en": item.i18n_tag.en, "tag_zh": item.i18n_tag.zh,
                         "type": item.type, "type_en": i18n_type.en if i18n_type else None,
                         "type_zh": i18n_type.zh if i18n_type else None, "confidence": float(item.confidence),
                         "rank": rank, "language": language})
        for instance in getattr(item, "instances", None) or []:
            b = instance.bounding_box
            detection_rows.append({**ctx.base(), "label": item.tag, "label_en": item.i18n_tag.en,
                                   "label_zh": item.i18n_tag.zh, "confidence": float(instance.confidence),
                                   **ctx.box(b.top_left_x, b.top_left_y, b.width, b.height)})
    return {"tags": tag_rows, "detections": detection_rows}
