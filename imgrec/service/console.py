"""The try-it page (`GET /console`, off unless `[console] enabled = true`): sign in with an IAM user of the
config, pick an API, drop an image or give a URL, see the JSON answer with the boxes and tags drawn on the
image, and the before/after of the image-out APIs.

One self-contained page (`console.html`: no external scripts, fonts or styles; works offline). It calls the
same routes any client calls, with the token from `/v3/auth/tokens`: it has no privileges of its own. Its
only script is inline and allowed by a per-response nonce in the Content-Security-Policy.
"""
from __future__ import annotations

import json
import secrets
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

from imgrec import schemas


def catalog() -> list[dict]:
    """What the page offers: each API's path, input, parameters with the reference's defaults."""
    return [{"name": spec.name, "path": spec.path, "input": spec.input, "image_out": spec.image_out,
             "deprecated": spec.deprecated, "params": {p.name: p.default for p in spec.params}}
            for spec in schemas.SPECS.values()]


@cache
def _page() -> str:
    # "</" cannot end the embedding <script> element early: JSON allows "<\/"
    apis = json.dumps(catalog(), ensure_ascii=False).replace("</", "<\\/")
    return files("imgrec.service").joinpath("console.html").read_text(encoding="utf-8").replace("__APIS__", apis)


async def console(request: Request) -> Response:
    nonce = secrets.token_urlsafe(16)
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data: blob:; "
              "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
    return Response(_page().replace("__NONCE__", nonce), media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                             "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
