"""celebrity_recognition response -> faces (confidence 0-1 scaled to 0-100)."""
from __future__ import annotations


def rows(response, ctx) -> dict[str, list[dict]]:
    return {"faces": [
        {**ctx.base(), "label": c.label, "confidence": c.confidence * 100.0,
         **ctx.box(c.face_detail.x, c.face_detail.y, c.face_detail.w, c.face_detail.h)}
        for c in response.result
    ]}
