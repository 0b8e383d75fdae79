"""The shared validation path: defaults, ranges, fallbacks, input rules and image checks per the reference."""
from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imgrec import schemas
from imgrec.engines import imaging
from imgrec.schemas.common import decode_base64, inspect_image
from imgrec.schemas.errors import ApiError
from tests.helpers import encode, photo


def decode_image(data: bytes, spec, max_side: int | None = None) -> np.ndarray:
    """What an engine does: the header checked once, then pixels decoded."""
    return imaging.decode(data, inspect_image(data, spec), max_side)


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    return info.value.code


@pytest.mark.parametrize("api,expected", [
    ("image_tagging", {"language": "zh", "threshold": 60.0, "limit": 150}),
    ("media_tagging", {"language": "zh", "threshold": 40.0, "limit": 10}),
    ("media_tagging_det", {"language": "zh", "threshold": 20.0, "limit": 10}),
    ("celebrity_recognition", {"threshold": 0.9}),
    ("main_object_detection", {"threshold": 30.0}),
    ("recapture_detect", {"threshold": 0.95}),
    ("image_tagging_v1", {"language": "zh", "limit": 30, "threshold": 0.0}),
    ("dark_enhance", {"brightness": 0.9}),
    ("defog", {"gamma": 1.5, "natural_look": True}),
    ("super_resolution", {"scale": 3, "model": "ESPCN"}),
])
def test_defaults_of_the_reference(api, expected):
    assert schemas.spec(api).parse({"image": "aGVsbG8="}).params == expected


def test_all_eleven_paths():
    assert sorted(s.path for s in schemas.SPECS.values()) == sorted([
        "/v2/{project_id}/image/tagging", "/v2/{project_id}/image/media-tagging",
        "/v2/{project_id}/image/media-tagging-det", "/v2/{project_id}/image/celebrity-recognition",
        "/v2/{project_id}/image/recapture-detect", "/v3/{project_id}/image/main-object-detection",
        "/v1.0/image/tagging", "/v1.0/vision/dark-enhance", "/v1.0/vision/defog",
        "/v1.0/vision/super-resolution", "/v1.0/bgm/recognition"])


@pytest.mark.parametrize("api,body,code", [
    ("image_tagging", {"image": "aGVsbG8=", "threshold": 101}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "limit": 0}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "limit": 151}, "AIS.0501"),
    ("media_tagging_det", {"image": "aGVsbG8=", "limit": 51}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "language": "fr"}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "threshold": "60"}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "limit": True}, "AIS.0501"),
    ("image_tagging", {"image": 12}, "AIS.0501"),
    ("image_tagging", {"image": "aGVsbG8=", "url": "https://example.com/a.jpg"}, "AIS.0501"),
    ("image_tagging", {}, "AIS.0011"),
    ("image_tagging", {"image": "", "url": ""}, "AIS.0011"),
    ("image_tagging", {"image": "aGVsbG8=", "colour": "red"}, "AIS.0012"),
    ("image_tagging", ["not", "an", "object"], "AIS.0014"),
    ("image_tagging", {"url": "ftp://example.com/a.jpg"}, "AIS.0022"),
    ("image_tagging", {"url": "not a url"}, "AIS.0022"),
    ("celebrity_recognition", {"image": "aGVsbG8=", "threshold": 1.5}, "AIS.0501"),
    ("defog", {"image": "aGVsbG8=", "gamma": 0.05}, "AIS.0501"),
    ("defog", {"image": "aGVsbG8=", "natural_look": "yes"}, "AIS.0501"),
    ("dark_enhance", {"image": "aGVsbG8=", "brightness": 1.2}, "AIS.0501"),
    ("super_resolution", {"image": "aGVsbG8=", "scale": 2}, "AIS.0501"),
    ("super_resolution", {"image": "aGVsbG8=", "model": "EDSR"}, "AIS.0501"),
    ("super_resolution", {"url": "https://example.com/a.jpg"}, "AIS.0012"),
    ("bgm_recognition", {}, "AIS.0011"),
    ("bgm_recognition", {"image": "aGVsbG8="}, "AIS.0012"),
])
def test_bad_parameters_get_the_reference_codes(api, body, code):
    assert code_of(schemas.spec(api).parse, body) == code


@pytest.mark.parametrize("api,value,expected", [
    ("recapture_detect", 1.5, 0.95), ("recapture_detect", 0.0, 0.95), ("recapture_detect", 0.5, 0.5),
    ("image_tagging_v1", 150.0, 0.0), ("image_tagging_v1", -3.0, 0.0), ("image_tagging_v1", 42.0, 42.0),
])
def test_out_of_range_falls_back_to_the_default_where_the_reference_says_so(api, value, expected):
    assert schemas.spec(api).parse({"image": "aGVsbG8=", "threshold": value}).params["threshold"] == expected


def test_multipart_form_values_are_coerced():
    parsed = schemas.spec("defog").parse({"gamma": "2.5", "natural_look": "false"}, file_bytes=b"x", from_form=True)
    assert parsed.params == {"gamma": 2.5, "natural_look": False} and parsed.image_bytes == b"x"
    assert code_of(schemas.spec("defog").parse, {"gamma": "abc"}, file_bytes=b"x", from_form=True) == "AIS.0501"
    assert code_of(schemas.spec("defog").parse, {"image": "aGVsbG8="}, file_bytes=b"x", from_form=True) == "AIS.0501"


def test_base64_as_real_clients_send_it():
    jpeg = encode(photo("coffee"))
    text = base64.b64encode(jpeg).decode()
    spec = schemas.spec("image_tagging").image
    chunked = "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # PHP chunk_split in the reference
    assert decode_base64(chunked, spec) == jpeg
    assert decode_base64("\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + "\n", spec) == jpeg  # PEM
    assert decode_base64(" \t".join(text[i:i + 100] for i in range(0, len(text), 100)), spec) == jpeg
    assert decode_base64("data:image/jpeg;base64," + text, spec) == jpeg
    assert decode_base64(text.rstrip("="), spec) == jpeg
    assert code_of(decode_base64, "not base64 !!", spec) == "AIS.0015"
    assert code_of(decode_base64, "data:image/jpeg,abc", spec) == "AIS.0015"
    assert code_of(decode_base64, "A" * (10 * 1024 * 1024 + 4), spec) == "AIS.0020"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions: a decompression bomb must be refused from its header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_image_checks_from_the_header():
    spec = schemas.spec("image_tagging").image  # max side 4096
    coffee = photo("coffee")
    assert inspect_image(encode(coffee, "WEBP"), spec).format == "WEBP"
    assert code_of(inspect_image, b"", spec) == "AIS.0503"
    assert code_of(inspect_image, b"%PDF-1.4 not an image", spec) == "AIS.0021"
    assert code_of(inspect_image, encode(coffee, "GIF"), spec) == "AIS.0502"
    assert code_of(inspect_image, encode(coffee, "WEBP"), schemas.spec("recapture_detect").image) == "AIS.0502"
    assert code_of(inspect_image, _png_header_only(50000, 50000), spec) == "AIS.0205"
    assert code_of(inspect_image, _png_header_only(5000, 100), spec) == "AIS.0504"
    assert code_of(inspect_image, encode(np.zeros((10, 10, 3), np.uint8)), schemas.spec("image_tagging_v1").image) == "AIS.0504"


def test_damaged_images_are_refused_on_decode():
    spec = schemas.spec("media_tagging").image
    jpeg, png = encode(photo("coffee")), encode(photo("coffee"), "PNG")
    assert code_of(decode_image, jpeg[: len(jpeg) // 3], spec) == "AIS.0503"
    assert code_of(decode_image, png[: len(png) // 2], spec) == "AIS.0503"


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_unusual_pixel_formats_decode_to_rgb(mode):
    rgb = photo("chelsea")[:64, :64]
    img = Image.fromarray(rgb)
    img = img.convert("L").convert("I;16") if mode == "I;16" else img.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    out = decode_image(buf.getvalue(), schemas.spec("media_tagging").image)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_large_jpeg_decodes_reduced_when_an_engine_asks():
    big = np.kron(photo("coffee"), np.ones((8, 8, 1), np.uint8))  # 3200 x 4800
    out = decode_image(encode(big), schemas.spec("media_tagging").image, max_side=800)
    assert max(out.shape[:2]) <= 1600
