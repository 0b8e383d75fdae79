"""Normalizers: an API's typed response -> rows of the pipeline's tables.

One normalizer per kind of result, named by the first table of the API's spec (`ApiSpec.tables`): the four
tagging APIs share `tags`, the three image-out APIs share `enhanced`. Confidences become floats on 0-100;
boxes get absolute and 0-1 normalised coordinates.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Callable

from imgrec.schemas.common import ANY_IMAGE, ApiSpec, inspect_image

Rows = dict[str, list[dict[str, Any]]]


@dataclass
class Context:
    run_id: str
    source: str
    key: str
    api: str
    width: int
    height: int
    params: dict[str, Any] = field(default_factory=dict)
    # For image-out APIs: store the output image, return its URI.
    write_output: Callable[[str, str, bytes, str], str] | None = None
    min_confidence: float = 0.0  # the run's floor for this API (RunParameters.min_confidence), 0-100

    def base(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "key": self.key, "api": self.api}

    def box(self, x: float, y: float, w: float, h: float) -> dict[str, float]:
        width, height = max(self.width, 1), max(self.height, 1)
        return {"x": float(x), "y": float(y), "width": float(w), "height": float(h),
                "x_norm": x / width, "y_norm": y / height, "width_norm": w / width, "height_norm": h / height}


def tags(response, ctx: Context) -> Rows:
    """Tag items -> `tags`; their instances (V2 and media-tagging-det boxes) -> `detections`."""
    language = ctx.params.get("language", "zh")
    tag_rows, detection_rows = [], []
    for rank, item in enumerate(response.result.tags, start=1):
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


def faces(response, ctx: Context) -> Rows:
    """Celebrity matches (confidence 0-1 scaled to 0-100)."""
    return {"faces": [
        {**ctx.base(), "label": c.label, "confidence": c.confidence * 100.0,
         **ctx.box(c.face_detail.x, c.face_detail.y, c.face_detail.w, c.face_detail.h)}
        for c in response.result
    ]}


def main_objects(response, ctx: Context) -> Rows:
    return {"main_objects": [
        {**ctx.base(), "label": o.label, "confidence": float(o.confidence),
         **ctx.box(o.location.top_left_x, o.location.top_left_y, o.location.width, o.location.height)}
        for o in response.result
    ]}


def recapture(response, ctx: Context) -> Rows:
    """One verdict row (scores 0-1 scaled to 0-100)."""
    r = response.result
    detail = r.detail[0] if r.detail else None
    return {"recapture": [{
        **ctx.base(), "suggestion": r.suggestion, "category": r.category or None,
        "score": float(r.score) * 100.0 if r.score else None,
        "detail_label": detail.label if detail else None,
        "detail_confidence": float(detail.confidence) * 100.0 if detail else None,
    }]}


def enhanced(response, ctx: Context) -> Rows:
    """Image-out APIs: store the returned image beside the tables, record where it went."""
    data = base64.b64decode(response.result)
    fmt = inspect_image(data, ANY_IMAGE).format
    uri = ctx.write_output(ctx.api, ctx.key, data, fmt) if ctx.write_output else None
    return {"enhanced": [{**ctx.base(), "output_uri": uri, "output_size": len(data), "output_format": fmt}]}


NORMALIZERS: dict[str, Callable[[Any, Context], Rows]] = {
    "tags": tags, "faces": faces, "main_objects": main_objects, "recapture": recapture, "enhanced": enhanced,
}


FLOORED = ("tags", "detections", "faces", "main_objects")  # the tables whose rows carry a 0-100 confidence


def normalize(spec: ApiSpec, response: Any, ctx: Context) -> Rows:
    """The answer's rows; those below the run's floor for the API are not written (tags re-ranked 1..n)."""
    rows = NORMALIZERS[spec.tables[0]](response, ctx)
    if ctx.min_confidence > 0:
        for table in FLOORED:
            if table in rows:
                rows[table] = [r for r in rows[table] if (r["confidence"] or 0) >= ctx.min_confidence]
        for rank, row in enumerate(rows.get("tags", []), start=1):
            row["rank"] = rank
    return rows
