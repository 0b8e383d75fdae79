"""One validation path for every endpoint, shared by the HTTP client, the service and the in-process backend.

An endpoint is described by an `ApiSpec`: its path, its parameters (with the reference's defaults, ranges and
out-of-range policy), how the input arrives (image XOR url, image XOR multipart file, url only) and an
`ImageSpec` (encoded size, side lengths, accepted formats). `ApiSpec.parse` turns a JSON body into a
`ParsedRequest` or raises `ApiError` with the reference's code; `inspect_image` checks raw bytes against the
`ImageSpec` from the header alone (pixels are decoded next to the engines, `imgrec/engines/imaging.py`).

An `ApiSpec` is also the one record of an API that every layer keys on: its response model, the empty
answer the simulation mode sends, and the pipeline tables its results land in. Engines and normalizers
attach to it by the spec object (see `imgrec.engines.ENGINES` and `imgrec.tasks.normalize`).
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
# The formats an image endpoint takes (PIL's names): each one's media type and file suffix.
FORMAT_FILES = {"JPEG": ("image/jpeg", ".jpg"), "PNG": ("image/png", ".png"), "BMP": ("image/bmp", ".bmp"),
                "WEBP": ("image/webp", ".webp")}
IMAGE_FORMATS = frozenset(FORMAT_FILES)
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
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ApiError.of("AIS.0501", f"{self.name} must be a number")
            try:
                value = float(value)  # an integer of 400 digits overflows: bad input, not a server error
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ApiError.of("AIS.0501", f"{self.name} must be a finite number")
            return value
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

    @property
    def max_raw_bytes(self) -> int:
        """The largest file whose base64 text fits `max_encoded_bytes`."""
        return self.max_encoded_bytes // 4 * 3

    def check_size(self, raw_len: int) -> None:
        """The reference limits the base64 text: checked from the raw length, without encoding."""
        if encoded_size(raw_len) > self.max_encoded_bytes:
            raise ApiError.of("AIS.0020", f"image of {raw_len} bytes exceeds the encoded limit")


# Any image at all, whatever its size: for reading a header before knowing which endpoint's limits apply,
# and for files this project writes itself (image-out results, gallery photos).
ANY_IMAGE = ImageSpec(max_encoded_bytes=1 << 62, max_side=1 << 30,
                      formats=frozenset({"JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF", "MPO"}))


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


def open_image(data: bytes):
    """PIL's lazy open (header only). Its own bomb guard is off: MAX_PIXELS is enforced from the header."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image.open(io.BytesIO(data))


def inspect_image(data: bytes, spec: ImageSpec) -> ImageInfo:
    """Check format and dimensions from the header only (no pixel decoding, so bombs cost nothing)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ApiError.of("AIS.0503", "zero-byte image")
    spec.check_size(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = open_image(data)
            info = ImageInfo(img.format or "", int(img.width), int(img.height), img.mode,
                             int(getattr(img, "n_frames", 1) or 1))
    except UnidentifiedImageError:
        raise ApiError.of("AIS.0021", "bytes are not a recognised image") from None
    except Exception as exc:  # truncated headers, bad chunk CRCs, ...
        raise ApiError.of("AIS.0503", type(exc).__name__) from None
    return check_image_info(info, len(data), spec)


def check_image_info(info: ImageInfo, size: int, spec: ImageSpec) -> ImageInfo:
    """The endpoint's limits applied to an already inspected image (one header parse serves many APIs)."""
    spec.check_size(size)
    if info.format not in spec.formats:
        raise ApiError.of("AIS.0502", f"{info.format} is not one of {sorted(spec.formats)}")
    if info.width * info.height > MAX_PIXELS:
        raise ApiError.of("AIS.0205", f"{info.width}x{info.height}")
    if min(info.width, info.height) < spec.min_side or max(info.width, info.height) > spec.max_side:
        raise ApiError.of("AIS.0504", f"{info.width}x{info.height} outside [{spec.min_side}, {spec.max_side}]")
    return info


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
    # The image's header, checked against the endpoint's limits: set once per call path by whoever read it
    # first (the pipeline's pre-validation, or the recognizer), so no later layer parses it again.
    image_info: ImageInfo | None = None


@dataclass(frozen=True)
class ApiSpec:
    """Everything the contract says about one endpoint: the API's one record.

    `response` is the typed answer, `empty` the valid empty answer (what simulation mode sends), `tables`
    the pipeline tables its results land in (none: not a catalog API); the first of them names the
    normalizer (`imgrec.tasks.normalize`)."""

    name: str
    path: str  # with {project_id} where the reference has it
    params: tuple[Param, ...]
    response: type
    empty: Any  # an instance of `response`
    tables: tuple[str, ...] = ()
    image: ImageSpec = field(default_factory=ImageSpec)
    input: InputMode = "image_or_url"
    image_out: bool = False  # v1 enhance endpoints answer with an image
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

    def resolve_params(self, given: Mapping[str, Any], from_form: bool = False) -> dict[str, Any]:
        """The request parameters as the service applies them (defaults filled, ranges checked)."""
        unknown = set(given) - {p.name for p in self.params}
        if unknown:
            raise ApiError.of("AIS.0012", f"unsupported parameter(s): {', '.join(sorted(map(str, unknown))[:5])}")
        return {p.name: p.resolve(given.get(p.name), from_form) for p in self.params}

    def parse(self, body: Any, *, file_bytes: bytes | None = None, from_form: bool = False) -> ParsedRequest:
        """Validate a decoded JSON body (or form fields plus an uploaded file) against the contract."""
        if not isinstance(body, Mapping):
            raise ApiError.of("AIS.0014", "the body must be a JSON object")
        unknown = set(body) - self.param_names()
        if unknown:
            raise ApiError.of("AIS.0012", f"unsupported parameter(s): {', '.join(sorted(map(str, unknown))[:5])}")
        image = _optional_str(body, "image")
        url = _optional_str(body, "url")
        params = {k: v for k, v in body.items() if k not in ("image", "url", "file")}
        return self.request(params, image_b64=image or None, url=url or None, file_bytes=file_bytes,
                            from_form=from_form)

    def request(self, params: Mapping[str, Any], *, image_b64: str | None = None, image: bytes | None = None,
                url: str | None = None, file_bytes: bytes | None = None, from_form: bool = False) -> ParsedRequest:
        """A request from Python values (what the in-process backend and `parse` build): exactly the inputs
        the endpoint allows, a well-formed URL, parameters resolved."""
        data = image if image is not None else file_bytes
        has_image = bool(image_b64) or image is not None
        if self.input == "url_only":
            if not url:
                raise ApiError.of("AIS.0011", "url is required")
            if has_image:
                raise ApiError.of("AIS.0012", "this endpoint takes a url only")
        elif self.input == "image_or_file":
            if url:
                raise ApiError.of("AIS.0012", "this endpoint takes an image, not a url")
            if image_b64 and file_bytes is not None:
                raise ApiError.of("AIS.0501", "give either image or file, not both")
            if not has_image and file_bytes is None:
                raise ApiError.of("AIS.0011", "image or file is required")
        else:
            if has_image and url:
                raise ApiError.of("AIS.0501", "give either image or url, not both")
            if not has_image and not url:
                raise ApiError.of("AIS.0011", "image or url is required")
        if data is not None and len(data) == 0:
            raise ApiError.of("AIS.0011", "the image is empty")
        if data is not None:
            self.image.check_size(len(data))
        if url:
            check_url_syntax(url)
        return ParsedRequest(api=self.name, params=self.resolve_params(params, from_form), image_b64=image_b64 or None, image_bytes=data,
                             url=url or None, from_form=from_form)

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

