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


def radius_for(shape: tuple[int, ...], fraction: float = 0.02, lo: int = 4, hi: int = 60) -> int:
    return int(np.clip(round(min(shape[:2]) * fraction), lo, hi))


# ---------------------------------------------------------------------------------------------- decoding
def decode_scaled(data: bytes, info: ImageInfo, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """Decode to an RGB uint8 array (H, W, 3) and the factor from its pixels to the original image's
    (EXIF-oriented) pixels, so boxes found on a reduced decode map back to the caller's coordinates.

    `info` is the header already checked against the endpoint's limits (`inspect_image`), so decoding
    never parses or checks it again. `max_side` lets an engine that works at a small size ask JPEG for a
    reduced-scale decode (draft mode), which bounds memory and time on 10000-px inputs. Palette, alpha,
    CMYK, 16-bit and greyscale inputs are converted; animated images use their first frame.
    """
    from PIL import Image, ImageOps

    try:
        img = open_image(data)
        if max_side and img.format == "JPEG" and max(info.width, info.height) > 2 * max_side:
            scale = max_side / max(info.width, info.height)
            img.draft("RGB", (max(1, int(info.width * scale)), max(1, int(info.height * scale))))
        img.load()
        rotated = img.format == "JPEG" and img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        img = ImageOps.exif_transpose(img) if img.format == "JPEG" else img
        original_width = info.height if rotated else info.width
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            peak = arr.max() or 1.0
            img = Image.fromarray((arr * (255.0 / max(peak, 255.0))).clip(0, 255).astype("uint8"))
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
