"""Shared by the image-out normalizers: store the returned image, record where it went."""
from __future__ import annotations

import base64

from imgrec.schemas.common import inspect_image, ImageSpec


def enhanced_rows(response, ctx) -> dict[str, list[dict]]:
    data = base64.b64decode(response.result)
    fmt = inspect_image(data, ImageSpec(max_encoded_bytes=1 << 40, max_side=1 << 20)).format
    uri = ctx.write_output(ctx.api, ctx.key, data, fmt) if ctx.write_output else None
    return {"enhanced": [{**ctx.base(), "output_uri": uri, "output_size": len(data), "output_format": fmt}]}
