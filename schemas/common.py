"""One validation path for every endpoint, shared by the HTTP client, the service and the in-process backend.

An endpoint is described by an `ApiSpec`: its path, its parameters (with the reference's defaults, ranges and
out-of-range policy), how the input arrives (image XOR url, image XOR multipart file, url only) and an
`ImageSpec` (encoded size, side lengths, accepted formats). `ApiSpec.parse` turns a JSON body into a
`ParsedRequest` or raises `ApiError` with the reference's code; `inspect_image` checks raw bytes against the
`ImageSpec` without decoding pixels; `decode_image` decodes with bounded memory.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .errors import ApiError

MB = 1024 * 1024
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP"})
# Hard ceiling on decoded pixels whatever an endpoint allows: 10000 x 10000 is the largest image the
# reference accepts; anything claiming more is a decompression bomb and is refused before decoding.
MAX_PIXELS = 10000 * 10000


# ---------------------------------------------------------------------------------------------- params
@dataclass(frozen=True)
class Param:
    """One optional body parameter. `out_of_range` is the reference's policy: an error or the default."""

    name: str
    kind: Literal["float", "int", "str", "bool"]
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    out_of_range: Literal["error", "default"] = "error"
    lo_open: bool = False  # "(0~1)" ranges exclude their ends
    hi_open: bool = False

    def coerce(self, value: Any, from_form: bool) -> Any:
        """JSON values must already have the right type; multipart form values arrive as strings."""
        if from_form and isinstance(value, str):
            value = _from_form_string(self.kind, value, self.name)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ApiError.of("AIS.0501", f"{self.name} must be a number")
            return float(value)
        if self.kind == "int":
            if isinstance(value, bool):
                raise ApiError.of("AIS.0501", f"{self.name} must be an integer")
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ApiError.of("AIS.0501", f"{self.name} must be an integer")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ApiError.of("AIS.0501", f"{self.name} must be a boolean")
            return value
        if not isinstance(value, str):
            raise ApiError.of("AIS.0501", f"{self.name} must be a string")
        return value

    def in_range(self, value: Any) -> bool:
        if self.choices is not None and value not in self.choices:
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True

    def resolve(self, raw: Any, from_form: bool = False) -> Any:
        if raw is None:
            return self.default
        value = self.coerce(raw, from_form)
        if self.in_range(value):
            return value
        if self.out_of_range == "default":
            return self.default
        raise ApiError.of("AIS.0501", f"{self.name}={value!r} is out of range")


def _from_form_string(kind: str, value: str, name: str) -> Any:
    text = value.strip()
    try:
        if kind == "float":
            return float(text)
        if kind == "int":
            return int(text)
        if kind == "bool":
            if text.lower() in ("true", "1"):
                return True
            if text.lower() in ("false", "0"):
                return False
            raise ValueError(text)
    except ValueError:
        raise ApiError.of("AIS.0501", f"{name} has an invalid value") from None
    return value


# ---------------------------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageSpec:
    max_encoded_bytes: int = 10 * MB  # the base64 text, as the reference states it
    min_side: int = 1
    max_side: int = 10000
    formats: frozenset[str] = IMAGE_FORMATS


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str
    frames: int = 1


def decode_base64(text: str, spec: ImageSpec) -> bytes:
    """Decode the `image` field. Accepts what real clients send: line breaks (PHP's chunk_split in the
    reference's own sample), a `data:image/...;base64,` prefix, missing padding. Anything else is AIS.0015."""
    if len(text) > spec.max_encoded_bytes:
        raise ApiError.of("AIS.0020", f"base64 image is {len(text)} bytes, limit {spec.max_encoded_bytes}")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError.of("AIS.0015", "data: URI without base64 payload")
    # str.replace, not a regex: the regex cost ~1 ms per 50 KB image, a sixth of the service's own time.
    compact = text.replace("\n", "").replace("\r", "").replace(" ", "").replace("\t", "")
    if not compact:
        raise ApiError.of("AIS.0011", "the image is empty")
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError.of("AIS.0015") from None
    if not data:
        raise ApiError.of("AIS.0015", "empty image after decoding")
    return data


def encoded_size(raw_len: int) -> int:
    """Length of the base64 text for `raw_len` bytes: lets the pipeline pre-validate without encoding."""
    return 4 * ((raw_len + 2) // 3)


def _open(data: bytes):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # we enforce MAX_PIXELS ourselves, before any pixel is decoded
    return Image.open(io.BytesIO(data))


def inspect_image(data: bytes, spec: ImageSpec) -> ImageInfo:
    """Check format and dimensions from the header only (no pixel decoding, so bombs cost nothing)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ApiError.of("AIS.0503", "zero-byte image")
    if encoded_size(len(data)) > spec.max_encoded_bytes:
        raise ApiError.of("AIS.0020", f"image of {len(data)} bytes exceeds the encoded limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(data)
            info = ImageInfo(img.format or "", int(img.width), int(img.height), img.mode,
                             int(getattr(img, "n_frames", 1) or 1))
    except UnidentifiedImageError:
        raise ApiError.of("AIS.0021", "bytes are not a recognised image") from None
    except Exception as exc:  # truncated headers, bad chunk CRCs, ...
        raise ApiError.of("AIS.0503", type(exc).__name__) from None
    return check_image_info(info, len(data), spec)


def check_image_info(info: ImageInfo, size: int, spec: ImageSpec) -> ImageInfo:
    """The endpoint's limits applied to an already inspected image (one header parse serves many APIs)."""
    if encoded_size(size) > spec.max_encoded_bytes:
        raise ApiError.of("AIS.0020", f"image of {size} bytes exceeds the encoded limit")
    if info.format not in spec.formats:
        raise ApiError.of("AIS.0502", f"{info.format} is not one of {sorted(spec.formats)}")
    if info.width * info.height > MAX_PIXELS:
        raise ApiError.of("AIS.0205", f"{info.width}x{info.height}")
    if min(info.width, info.height) < spec.min_side or max(info.width, info.height) > spec.max_side:
        raise ApiError.of("AIS.0504", f"{info.width}x{info.height} outside [{spec.min_side}, {spec.max_side}]")
    return info


def decode_image(data: bytes, spec: ImageSpec, max_side: int | None = None):
    return decode_image_scaled(data, spec, max_side)[0]


def decode_image_scaled(data: bytes, spec: ImageSpec, max_side: int | None = None):
    """Like `decode_image`, also returning the factor from the array's pixels to the original image's
    (EXIF-oriented) pixels, so boxes found on a reduced decode map back to the caller's coordinates.

    Decode to an RGB uint8 numpy array (H, W, 3), after `inspect_image`'s checks.

    `max_side` lets an engine that works at a small size ask JPEG for a reduced-scale decode (draft mode),
    which bounds memory and time on 10000-px inputs. Palette, alpha, CMYK, 16-bit and greyscale inputs are
    converted; animated images use their first frame.
    """
    import numpy as np
    from PIL import Image, ImageOps

    info = inspect_image(data, spec)
    try:
        img = _open(data)
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


def encode_image(array, fmt: str = "JPEG") -> bytes:
    """Encode an RGB array in the given format (the v1 image-out endpoints answer in the input's format)."""
    from PIL import Image

    fmt = fmt if fmt in IMAGE_FORMATS else "JPEG"
    buf = io.BytesIO()
    kwargs = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- requests
InputMode = Literal["image_or_url", "image_or_file", "url_only"]


@dataclass
class ParsedRequest:
    api: str
    params: dict[str, Any]
    image_b64: str | None = None  # still encoded: decoding is the acquisition step's job
    image_bytes: bytes | None = None  # from a multipart file, or set once acquired
    url: str | None = None
    from_form: bool = False
    tenant: str = ""  # the caller's project, set by the service: engines share work only within one tenant


@dataclass(frozen=True)
class ApiSpec:
    """Everything the contract says about one endpoint."""

    name: str
    path: str  # with {project_id} where the reference has it
    params: tuple[Param, ...]
    image: ImageSpec = field(default_factory=ImageSpec)
    input: InputMode = "image_or_url"
    image_out: bool = False  # v1 enhance endpoints answer with an image
    sdk_method: str | None = None  # huaweicloudsdkimage ImageClient method, where the SDK has one
    deprecated: bool = False
    max_url_bytes: int = 10 * MB

    @property
    def needs_project(self) -> bool:
        return "{project_id}" in self.path

    def param_names(self) -> set[str]:
        names = {p.name for p in self.params}
        names |= {"url"} if self.input in ("image_or_url", "url_only") else set()
        names |= {"image"} if self.input in ("image_or_url", "image_or_file") else set()
        names |= {"file"} if self.input == "image_or_file" else set()
        return names

    def parse(self, body: Any, *, file_bytes: bytes | None = None, from_form: bool = False) -> ParsedRequest:
        """Validate a decoded JSON body (or form fields plus an uploaded file) against the contract."""
        if not isinstance(body, Mapping):
            raise ApiError.of("AIS.0014", "the body must be a JSON object")
        unknown = set(body) - self.param_names()
        if unknown:
            raise ApiError.of("AIS.0012", f"unsupported parameter(s): {', '.join(sorted(map(str, unknown))[:5])}")
        image = _optional_str(body, "image")
        url = _optional_str(body, "url")
        if self.input == "url_only":
            if not url:
                raise ApiError.of("AIS.0011", "url is required")
        elif self.input == "image_or_file":
            if image and file_bytes is not None:
                raise ApiError.of("AIS.0501", "give either image or file, not both")
            if not image and file_bytes is None:
                raise ApiError.of("AIS.0011", "image or file is required")
            if file_bytes is not None and len(file_bytes) == 0:
                raise ApiError.of("AIS.0011", "the uploaded file is empty")
        else:
            if image and url:
                raise ApiError.of("AIS.0501", "give either image or url, not both")
            if not image and not url:
                raise ApiError.of("AIS.0011", "image or url is required")
        if url:
            check_url_syntax(url)
        params = {p.name: p.resolve(body.get(p.name), from_form) for p in self.params}
        return ParsedRequest(api=self.name, params=params, image_b64=image or None,
                             image_bytes=file_bytes, url=url or None, from_form=from_form)

    def body_for(self, *, image_b64: str | None = None, url: str | None = None, **params: Any) -> dict[str, Any]:
        """The JSON body a client sends: only given fields (like the SDK, None is never serialised)."""
        body: dict[str, Any] = {}
        if image_b64 is not None:
            body["image"] = image_b64
        if url is not None:
            body["url"] = url
        known = {p.name for p in self.params}
        for key, value in params.items():
            if key not in known:
                raise ApiError.of("AIS.0012", f"{key} is not a parameter of {self.name}")
            if value is not None:
                body[key] = value
        return body


def _optional_str(body: Mapping, key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError.of("AIS.0501", f"{key} must be a string")
    return value


def check_url_syntax(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ApiError.of("AIS.0022", "malformed URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 8192:
        raise ApiError.of("AIS.0022", "only http and https URLs with a host are accepted")


# ---------------------------------------------------------------------------------------------- output
def fmt_confidence(value: float, digits: int = 2) -> str:
    """The reference returns Float confidences as strings ("39.42")."""
    return f"{value:.{digits}f}"

