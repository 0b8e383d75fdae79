"""Image helpers the engines share: decoding and encoding (pixels are only ever decoded here), float
conversion, the guided filter."""
from __future__ import annotations

import io

import numpy as np

from imgrec.schemas.common import IMAGE_FORMATS, ImageInfo, open_image
from imgrec.schemas.errors import ApiError


def to_float(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of `src` steered by `guide` (He et al.), via OpenCV's ximgproc."""
    import cv2

    return cv2.ximgproc.guidedFilter(guide.astype(np.float32), src.astype(np.float32), radius, eps)


# The image-out engines estimate their smooth maps (illumination, transmission) on a copy of at most this
# many pixels and apply them to the full image a band of rows at a time: memory stays a few bytes a pixel
# whatever the size (the maps are smooth, so the estimate at 2 MP is the estimate at full size).
MAP_PIXELS = 2_000_000
BAND_ROWS = 256


def work_copy(rgb: np.ndarray, pixels: int = MAP_PIXELS) -> np.ndarray:
    """`rgb` itself when small enough, else an area-averaged copy of at most `pixels` pixels."""
    import cv2

    h, w = rgb.shape[:2]
    if h * w <= pixels:
        return rgb
    scale = (pixels / (h * w)) ** 0.5
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def long_side(img: np.ndarray, side: int) -> np.ndarray:
    """An area-averaged copy whose longer side is `side` pixels (the networks' work copies, as trained; at
    least 8 pixels a side)."""
    import cv2

    h, w = img.shape[:2]
    s = side / max(h, w)
    return cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)


def full_size_map(small_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map estimated on the work copy at the full image's size, as float16 (2 bytes a pixel)."""
    import cv2

    if small_map.shape == (height, width):
        return small_map.astype(np.float32)
    return cv2.resize(small_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float16)


def banded(rgb: np.ndarray, fn) -> np.ndarray:
    """`fn(float band, rows)` applied a band of rows at a time into a uint8 result: no full-size float copy."""
    out = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], BAND_ROWS):
        rows = slice(top, min(rgb.shape[0], top + BAND_ROWS))
        out[rows] = to_uint8(fn(to_float(rgb[rows]), rows))
    return out


def radius_for(shape: tuple[int, ...], fraction: float = 0.02, lo: int = 4, hi: int = 60) -> int:
    return int(np.clip(round(min(shape[:2]) * fraction), lo, hi))


# ---------------------------------------------------------------------------------------------- decoding
# A full-resolution decode holds several full-size copies (the decoder's, RGB, an image-out API's result and
# its encoder's; PIL's WebP decoder alone ~8 bytes a pixel): above this many pixels it is refused with the
# reference's resolution code before any pixel is decoded, so one request cannot take gigabytes. That is
# every image-out API's decode, and every non-JPEG decode (PIL decodes PNG, WebP and BMP whole); a JPEG an
# engine wants smaller decodes reduced (draft mode) and has no such limit.
FULL_DECODE_MAX_PIXELS = 40_000_000


def decode_scaled(data: bytes, info: ImageInfo, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """Decode to an RGB uint8 array (H, W, 3) and the factor from its pixels to the original image's
    (EXIF-oriented) pixels, so boxes found on a reduced decode map back to the caller's coordinates.

    `info` is the header already checked against the endpoint's limits (`inspect_image`), so decoding
    never parses or checks it again. `max_side` lets an engine that works at a small size get a reduced
    image: JPEG decodes reduced (draft mode); other formats decode once and are reduced right away, before
    any conversion copies them. Palette, alpha, CMYK, 16-bit and greyscale inputs are converted; animated
    images use their first frame.
    """
    from PIL import Image, ImageOps

    reduced_jpeg = bool(max_side) and info.format == "JPEG"
    if not reduced_jpeg and info.width * info.height > FULL_DECODE_MAX_PIXELS:
        raise ApiError.of("AIS.0205", f"{info.width}x{info.height}: at most {FULL_DECODE_MAX_PIXELS:,} pixels "
                                      "are decoded whole")
    try:
        img = open_image(data)
        if max_side and img.format == "JPEG" and max(info.width, info.height) > 2 * max_side:
            scale = max_side / max(info.width, info.height)
            img.draft("RGB", (max(1, int(info.width * scale)), max(1, int(info.height * scale))))
        img.load()
        factor = max(img.size) // max_side if max_side and max(img.size) >= 2 * max_side else 1
        rotated = img.format == "JPEG" and img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        img = ImageOps.exif_transpose(img) if img.format == "JPEG" else img
        original_width = info.height if rotated else info.width
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img)[::factor, ::factor]  # PIL cannot reduce 16-bit images: subsample
            peak = int(arr.max()) or 1
            shift = max(0, peak.bit_length() - 8)  # 16-bit to 8 by a shift: no float copy of the image
            img = Image.fromarray((arr >> shift).clip(0, 255).astype(np.uint8))
        elif factor > 1:  # reduce before converting: no full-size copies
            img = img.reduce(factor)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
        return rgb, original_width / rgb.shape[1]
    except ApiError:
        raise
    except MemoryError:
        raise ApiError.of("AIS.0205", "image too large to decode") from None
    except Exception as exc:
        raise ApiError.of("AIS.0503", type(exc).__name__) from None


WORK_SIDE = 1280  # the analysis pass's image: the detector works at 512 px, faces need some detail


def work_image(data: bytes, info: ImageInfo) -> tuple[np.ndarray, float]:
    """The image the analysis pass and the fingerprint see (at most WORK_SIDE on its long side), and the
    factor from its pixels to the original's."""
    rgb, scale = decode_scaled(data, info, max_side=WORK_SIDE)
    if max(rgb.shape[:2]) > WORK_SIDE:
        import cv2

        shrink = WORK_SIDE / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * shrink)), max(1, round(rgb.shape[0] * shrink))),
                         interpolation=cv2.INTER_AREA)
        scale /= shrink
    return rgb, scale


def decode(data: bytes, info: ImageInfo, max_side: int | None = None) -> np.ndarray:
    return decode_scaled(data, info, max_side)[0]


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    """Encode an RGB array in the given format (the v1 image-out endpoints answer in the input's format)."""
    from PIL import Image

    fmt = fmt if fmt in IMAGE_FORMATS else "JPEG"
    buf = io.BytesIO()
    kwargs = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def iou(a, b) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax2, bx2) - max(a[0], b[0])) * max(0.0, min(ay2, by2) - max(a[1], b[1]))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)
