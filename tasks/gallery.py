"""The report's contact sheet: thumbnails of the run's images (the report's own sample: failed and invalid
first), made at report time from the source, each with the detector's boxes and labels drawn, its best tags,
the recapture verdict, recognised faces and, for the image-out APIs, the result beside the original.

Bounded whatever the run's size: at most GALLERY_IMAGES images and GALLERY_BYTES of embedded thumbnails
(JPEG data URIs; the page stays one self-contained file). An image that cannot be read or decoded any more
gets a card without a picture, not a failed report.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from imgrec.connectors.source import open_source
from imgrec.schemas.recapture_detect import RECAPTURED

from .job import Job
from .formats import RUN_TABLE, query_run

GALLERY_IMAGES = 200
GALLERY_BYTES = 5_000_000
THUMB_SIDE = 200  # pixels, the longer side
MAX_READ = 30_000_000  # bytes: larger originals get a card without a thumbnail


def thumbnail(data: bytes) -> tuple[str, int, int] | None:
    """(JPEG data URI, width, height) of a thumbnail, or None when the bytes do not decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))  # JPEG: decode at a reduced scale
            img = img.convert("RGB")
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=70)
    except Exception:  # noqa: BLE001 - any undecodable input: no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), img.width, img.height


def _result_bytes(job: Job, uri: str | None) -> bytes | None:
    """An image-out result this run stored (a file:// or the output bucket's URI), or None when gone."""
    try:
        parsed = urlparse(uri or "")
        if parsed.scheme == "file":
            return Path(unquote(parsed.path)).read_bytes()
        base = job.output.uri_of("")
        return job.output.get(uri[len(base):]) if uri and uri.startswith(base) else None
    except Exception:  # noqa: BLE001 - removed since the run: a card without the result
        return None


def gallery(job: Job, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards for the report's per-image rows, in their order, within the bounds."""
    rows = images[:GALLERY_IMAGES]
    if not rows:
        return []
    keys = [row["key"] for row in rows]

    def by_key(table: str, columns: str) -> dict[str, list[tuple]]:
        found: dict[str, list[tuple]] = {}
        for key, *rest in query_run(job, table, f"SELECT key, {columns} FROM {RUN_TABLE} WHERE run_id = $run_id "
                                    "AND list_contains($keys, key)", keys=keys):
            found.setdefault(key, []).append(tuple(rest))
        return found

    boxes = by_key("detections", "coalesce(label_en, label), confidence, x_norm, y_norm, width_norm, height_norm")
    verdicts = by_key("recapture", "suggestion")
    faces = by_key("faces", "label")
    outputs = by_key("enhanced", "api, output_uri")
    storage = open_source(job.source)
    cards, used = [], 0
    for row in rows:
        key = row["key"]
        card = {**row, "thumb": None, "boxes": [], "after": [],
                "verdict": next((RECAPTURED.get(v, v) for (v,) in verdicts.get(key, []) if v), None),
                "faces": sorted({f for (f,) in faces.get(key, []) if f})}
        try:
            picture = thumbnail(storage.read(key, limit=MAX_READ))
        except Exception:  # noqa: BLE001 - gone since the run, unreadable, too large: a card without a picture
            picture = None
        if picture is not None:
            card["thumb"], card["width"], card["height"] = picture
            seen = set()
            for label, confidence, x, y, w, h in sorted(boxes.get(key, []), key=lambda b: -(b[1] or 0)):
                if None in (x, y, w, h) or (label, round(x, 2), round(y, 2)) in seen:
                    continue  # one box per object even when several APIs reported it
                seen.add((label, round(x, 2), round(y, 2)))
                card["boxes"].append({"label": label, "x": round(x * card["width"], 1),
                                      "y": round(y * card["height"], 1), "w": round(w * card["width"], 1),
                                      "h": round(h * card["height"], 1)})
        for api, uri in outputs.get(key, []):
            result = thumbnail(data) if (data := _result_bytes(job, uri)) else None
            if result is not None:
                card["after"].append({"api": api, "thumb": result[0]})
        used += len(card["thumb"] or "") + sum(len(a["thumb"]) for a in card["after"])
        if used > GALLERY_BYTES:
            break
        cards.append(card)
    return cards


GROUP_IMAGES = 6  # thumbnails shown per near-duplicate group
GROUP_BYTES = 1_000_000


def group_sheet(job: Job, groups: list[list[str]]) -> list[list[dict[str, Any]]]:
    """The report's near-duplicate groups as thumbnails (the first GROUP_IMAGES of each, within GROUP_BYTES):
    a member that cannot be read any more keeps its name without a picture."""
    storage = open_source(job.source)
    sheet, used = [], 0
    for group in groups:
        row = []
        for key in group[:GROUP_IMAGES]:
            try:
                picture = thumbnail(storage.read(key, limit=MAX_READ)) if used < GROUP_BYTES else None
            except Exception:  # noqa: BLE001 - gone since the run, unreadable
                picture = None
            used += len(picture[0]) if picture else 0
            row.append({"key": key, "thumb": picture[0] if picture else None})
        sheet.append(row)
    return sheet
