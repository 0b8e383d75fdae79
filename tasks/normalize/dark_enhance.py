"""dark_enhance response -> enhanced (the output image is stored beside the tables)."""
from __future__ import annotations

from ._enhanced import enhanced_rows


def rows(response, ctx) -> dict[str, list[dict]]:
    return enhanced_rows(response, ctx)
