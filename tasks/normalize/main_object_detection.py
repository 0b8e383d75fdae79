"""main_object_detection response -> main_objects."""
from __future__ import annotations


def rows(response, ctx) -> dict[str, list[dict]]:
    return {"main_objects": [
        {**ctx.base(), "label": o.label, "confidence": float(o.confidence),
         **ctx.box(o.location.top_left_x, o.location.top_left_y, o.location.width, o.location.height)}
        for o in response.result
    ]}
