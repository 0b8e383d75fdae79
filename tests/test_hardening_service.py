"""Bad input that used to answer 500 (which clients retry), and the body-signing guard (issue 18, LOW)."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from imgrec.connectors import signer
from imgrec.service.app import create_app
from imgrec.settings import Settings
from tests.helpers import AK, DOMAIN, PASSWORD, PROJECT, PROJECT_NAME, SK, USER, encode, photo


@pytest.fixture(scope="module")
def client():
    settings = Settings(credentials=[{"access_key": AK, "secret_key": SK, "project_id": PROJECT}],
                        users=[{"domain": DOMAIN, "name": USER, "password": PASSWORD, "project_id": PROJECT,
                                "project_name": PROJECT_NAME}])
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _token_body(project) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": USER, "password": PASSWORD, "domain": {"name": DOMAIN}}}}, "scope": {"project": project}}}


def _signed_post(client, path: str, body: bytes, content_type: str, unsigned: bool = False):
    import hashlib

    headers = {"Content-Type": content_type, "Host": "testserver",
               signer.HEADER_CONTENT: signer.UNSIGNED if unsigned else hashlib.sha256(body).hexdigest()}
    headers = signer.sign("POST", path, headers, body, AK, SK)
    return client.post(path, content=body, headers=headers)


def test_token_requests_with_odd_shapes_are_4xx(client):
    assert client.post("/v3/auth/tokens", json=_token_body({"name": PROJECT_NAME})).status_code == 201
    for body in (_token_body("x"), _token_body(["x"]), {"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": [USER], "password": PASSWORD, "domain": {"name": DOMAIN}}}}}}):
        answer = client.post("/v3/auth/tokens", json=body)
        assert answer.status_code == 400 and answer.json()["error_code"] == "IAM.0001", answer.text


def test_a_token_whose_mac_is_not_ascii_is_refused_not_a_500(client):
    token = client.post("/v3/auth/tokens", json=_token_body({"name": PROJECT_NAME})).headers["X-Subject-Token"]
    forged = token[:-1] + "\xff"
    answer = client.post(f"/v2/{PROJECT}/image/tagging", json={"image": "aGVsbG8="},
                         headers={"X-Auth-Token": forged.encode("latin-1")})  # raw bytes, as a client may send
    assert answer.status_code == 401 and answer.json()["error_code"] == "APIG.0301"


def test_a_signature_that_is_not_ascii_is_refused_not_a_500(client):
    path = f"/v2/{PROJECT}/image/tagging"
    body = b'{"image": "aGVsbG8="}'
    headers = signer.sign("POST", path, {"Content-Type": "application/json", "Host": "testserver"}, body, AK, SK)
    headers["Authorization"] = (headers["Authorization"][:-1] + "\xff").encode("latin-1")
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 401 and answer.json()["error_code"] == "APIG.0301"


@pytest.mark.parametrize("content_type", ["Application/JSON", "text/plain", "application/octet-stream"])
def test_only_a_multipart_body_may_be_unsigned(client, content_type):
    path = f"/v2/{PROJECT}/image/tagging"
    answer = _signed_post(client, path, b'{"image": "aGVsbG8="}', content_type, unsigned=True)
    assert answer.status_code == 401 and answer.json()["error_code"] == "APIG.0301"
    # signed, the same body under a mixed-case JSON type is accepted (and parsed as JSON)
    signed = _signed_post(client, path, b'{"image": "!!"}', content_type)
    assert signed.status_code == 400 and signed.json()["error_code"] == "AIS.0015"


def test_a_mixed_case_multipart_upload_is_parsed_as_one():
    settings = Settings(auth={"enabled": False})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        png = encode(photo("coffee")[:64, :64], "PNG")
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
        answer = client.post("/v1.0/vision/defog", content=body,
                             headers={"Content-Type": f"Multipart/Form-Data; boundary={boundary}"})
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"


def test_recapture_judges_a_one_pixel_strip():
    """The reference allows a 1-px side; the features must not blow such a strip up (or assert in OpenCV)."""
    settings = Settings(auth={"enabled": False})
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1, 4096, 3), dtype=np.uint8)).save(buf, "PNG")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.post(f"/v2/{PROJECT}/image/recapture-detect",
                             json={"image": base64.b64encode(buf.getvalue()).decode()})
    assert answer.status_code == 200 and answer.json()["result"]["suggestion"] in ("true", "false", "uncertainty")
