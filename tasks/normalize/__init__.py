"""Normalizers: one module per API, each turning that API's typed response into table rows.

`normalize(api, response, ctx)` returns {table: [row, ...]}. Confidences become floats on 0-100; boxes get
absolute and 0-1 normalised coordinates.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


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

    def base(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "key": self.key, "api": self.api}

    def box(self, x: float, y: float, w: float, h: float) -> dict[str, float]:
        width, height = max(self.width, 1), max(self.height, 1)
        return {"x": float(x), "y": float(y), "width": float(w), "height": float(h),
                "x_norm": x / width, "y_norm": y / height, "width_norm": w / width, "height_norm": h / height}


def normalize(api: str, response: Any, ctx: Context) -> dict[str, list[dict[str, Any]]]:
    module = importlib.import_module(f"{__name__}.{api}")
    return module.rows(response, ctx)
