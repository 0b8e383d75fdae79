"""Property-based fuzz of the request parser: random bodies against every endpoint never get a 500.

Random JSON objects (known and unknown keys, values of every JSON type and size), base64 of random bytes
and of real tiny images, URLs of every malformed and private kind, raw non-JSON bodies and multipart
uploads go through the real service app in-process, with the real engines. Every answer must be a result
(2xx) or an error body with a code from the reference's catalogue and a 4xx status.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from imgrec import schemas
from imgrec.schemas.errors import CATALOGUE
from imgrec.service.app import create_app
from imgrec.settings import Settings

PROJECT = "0123456789abcdef0123456789abcdef"


def _image(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(sum(size))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = [_image("PNG", (1, 1)), _image("JPEG", (16, 16)), _image("WEBP", (20, 8)), _image("BMP", (3, 40)),
          _image("GIF", (8, 8), "P"), _image("PNG", (5000, 1), "L"), _image("JPEG", (17, 15))[:200]]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=40) | st.sampled_from(["1" + "0" * 400, "zh", "en", "fr", "ESPCN", "SRCNN", "", "true"])
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
base64_values = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(IMAGES).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(IMAGES).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=\n\r \t-_*", max_size=80),
)
urls = st.sampled_from([
    "http://127.0.0.1/x.jpg", "http://10.0.0.1:9000/a.png", "https://[::1]/i.jpg", "http://0/", "ftp://x/y.jpg",
    "not a url", "http://:80/x", "http://127.0.0.1:99999/x", "https://8.8.8.8/photo.jpg", "http://169.254.169.254/",
    "javascript:alert(1)", "http://user:pw@192.168.1.1/a", "https://" + "a" * 9000 + ".com/x.jpg", "",
])
keys = st.sampled_from(["image", "url", "file", "threshold", "limit", "language", "scale", "model", "gamma",
                        "natural_look", "brightness", "extra", "Image", ""])
bodies = st.dictionaries(keys, st.one_of(json_values, base64_values, urls), max_size=6)


@pytest.fixture(scope="module")
def client():
    app = create_app(Settings(auth={"enabled": False}))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 300:
        body = response.json()
        assert body["error_code"] in CATALOGUE and body["error_msg"] == CATALOGUE[body["error_code"]].message


SPECS = list(schemas.SPECS.values())
requests = st.one_of(
    st.tuples(st.just("json"), st.sampled_from(SPECS), bodies),
    st.tuples(st.just("raw"), st.sampled_from(SPECS), st.binary(max_size=200) | st.sampled_from(
        [b"[" * 5000, b'{"image": "' + b"A" * 100 + b'"', b"null", b"  ",
         b'{"image": "' + base64.b64encode(IMAGES[1]) + b'", "threshold": 1' + b"0" * 4000 + b"}",
         b'{"image": "' + base64.b64encode(IMAGES[1]) + b'", "limit": 1' + b"0" * 400 + b"}"])),
    st.tuples(st.just("form"), st.sampled_from([s for s in SPECS if s.input == "image_or_file"]),
              st.tuples(st.dictionaries(keys, st.text(max_size=20), max_size=4),
                        st.none() | st.sampled_from(IMAGES) | st.binary(max_size=50))),
)


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(request=requests)
def test_no_body_gets_a_500(client, request):
    kind, spec, payload = request
    path = spec.path.replace("{project_id}", PROJECT)
    if kind == "json":
        response = client.post(path, content=orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
                               if _serialisable(payload) else b"{}", headers={"Content-Type": "application/json"})
    elif kind == "raw":
        response = client.post(path, content=payload, headers={"Content-Type": "application/json"})
    else:
        fields, file = payload
        response = client.post(path, data=fields, files={"file": ("x.jpg", file)} if file is not None else None)
    _check(response)


def _serialisable(payload) -> bool:
    try:
        orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        return True
    except (TypeError, orjson.JSONEncodeError):
        return False
