"""recapture_detect response -> one recapture row (scores 0-1 scaled to 0-100)."""
from __future__ import annotations


def rows(response, ctx) -> dict[str, list[dict]]:
    r = response.result
    detail = r.detail[0] if r.detail else None
    return {"recapture": [{
        **ctx.base(), "suggestion": r.suggestion, "category": r.category or None,
        "score": float(r.score) * 100.0 if r.score else None,
        "detail_label": detail.label if detail else None,
        "detail_confidence": float(detail.confidence) * 100.0 if detail else None,
    }]}
