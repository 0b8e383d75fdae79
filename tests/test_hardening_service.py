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


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / (1 << 20)


def test_callers_without_credentials_get_no_body_buffer(service):
    """200 connections announce 11 MB bodies without credentials and send the first megabyte: each is refused
    from its headers (401 before the body), the service's memory stays flat, /health keeps answering."""
    import socket
    from urllib.parse import urlsplit

    import httpx

    host, port = urlsplit(service.base_url).hostname, urlsplit(service.base_url).port
    before = _rss_mb(service.proc.pid)
    head = (f"POST /v2/{PROJECT}/image/tagging HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {11 << 20}\r\n\r\n").encode()
    sockets, answers = [], []
    try:
        for _ in range(200):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(head)
            sockets.append(s)
        for s in sockets:
            try:
                s.sendall(b"A" * (1 << 20))
            except OSError:
                pass  # the service may already have answered and closed
        peak = _rss_mb(service.proc.pid)
        assert httpx.get(service.base_url + "/health", timeout=10).status_code == 200
        for s in sockets:
            answers.append(s.recv(200))
    finally:
        for s in sockets:
            s.close()
    assert all(a.startswith(b"HTTP/1.1 401") for a in answers), answers[:3]
    assert peak - before < 300, (before, peak)


def test_an_unknown_access_key_is_refused_after_its_body_like_a_known_one(service):
    """The body is hashed for an unknown key too (streamed, not kept), so timing does not reveal which keys
    exist; the answer is the same 401."""
    import httpx

    path = f"/v2/{PROJECT}/image/tagging"
    body = b'{"image": "' + b"A" * (4 << 20) + b'"}'
    from urllib.parse import urlsplit

    netloc = urlsplit(service.base_url).netloc
    answers = {}
    for name, (ak, sk) in {"known key, wrong secret": (AK, "not-the-secret"),
                           "unknown key": ("AKUNKNOWNKEY0000", "whatever")}.items():
        headers = signer.sign("POST", path, {"Content-Type": "application/json", "Host": netloc}, body, ak, sk)
        answer = httpx.post(service.base_url + path, content=body, headers=headers, timeout=30)
        answers[name] = (answer.status_code, answer.json()["error_code"])
    assert set(answers.values()) == {(401, "APIG.0301")}, answers


def test_metrics_and_ready_can_require_credentials():
    settings = Settings(service={"public_metrics": False},
                        users=[{"domain": DOMAIN, "name": USER, "password": PASSWORD, "project_id": PROJECT,
                                "project_name": PROJECT_NAME}])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in ("/metrics", "/ready"):
            assert client.get(path).status_code == 401
        token = client.post("/v3/auth/tokens", json=_token_body({"name": PROJECT_NAME})).headers["X-Subject-Token"]
        assert client.get("/metrics", headers={"X-Auth-Token": token}).status_code == 200
        assert client.get("/ready", headers={"X-Auth-Token": token}).status_code == 200
        assert client.get("/health").status_code == 200  # liveness stays open


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory):
    from tests.helpers import ServiceProcess, write_config

    folder = tmp_path_factory.mktemp("strict-service")
    extra = "\n[service]\nheader_timeout_seconds = 1.5\nbody_idle_timeout_seconds = 1.5\nmax_header_bytes = 8192\n"
    proc = ServiceProcess(write_config(folder, extra=extra), folder / "service.log")
    yield proc
    proc.stop()


def _connect(service):
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(service.base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def test_oversized_headers_get_431(strict_service):
    with _connect(strict_service) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 431")


def test_slow_headers_and_stalled_bodies_are_closed_and_health_answers(strict_service):
    import time

    import httpx

    stalled = [_connect(strict_service) for _ in range(300)]
    try:
        for i, s in enumerate(stalled):
            if i % 2:
                s.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            else:
                s.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")  # body stalls
        assert httpx.get(strict_service.base_url + "/health", timeout=10).status_code == 200
        time.sleep(2.5)
        closed = 0
        for s in stalled:
            s.settimeout(2)
            try:
                closed += s.recv(100) == b""
            except OSError:
                closed += 1
        assert closed == len(stalled)
    finally:
        for s in stalled:
            s.close()


def test_password_guessing_is_throttled():
    settings = Settings(users=[{"domain": DOMAIN, "name": USER, "password": PASSWORD, "project_id": PROJECT,
                                "project_name": PROJECT_NAME}])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wrong = _token_body({"name": PROJECT_NAME})
        wrong["auth"]["identity"]["password"]["user"]["password"] = "guess"
        codes = [client.post("/v3/auth/tokens", json=wrong).status_code for _ in range(30)]
        assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
        # the right password from the same address waits out the minute too: no guessing at speed
        assert client.post("/v3/auth/tokens", json=_token_body({"name": PROJECT_NAME})).status_code == 429


def test_requests_past_the_active_limit_get_429_before_their_body(tmp_path):
    import asyncio

    import httpx

    from tests.helpers import ServiceProcess, write_config

    extra = ("\n[auth]\nenabled = false\n[service]\nmax_active_requests = 2\n"
             "[simulate]\nenabled = true\nlatency_ms = 1500\n")
    service = ServiceProcess(write_config(tmp_path, extra=extra), tmp_path / "service.log")
    try:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
                answers = await asyncio.gather(*(http.post(f"/v2/{PROJECT}/image/tagging", json={"image": "aGVsbG8="})
                                                 for _ in range(5)))
            return sorted(a.status_code for a in answers)

        assert asyncio.run(burst()) == [200, 200, 429, 429, 429]
        log = service.log_text()
    finally:
        service.stop()
    assert "APIG.0308" in log


def test_connections_past_the_limit_are_refused_at_once(tmp_path):
    from tests.helpers import ServiceProcess, write_config

    service = ServiceProcess(write_config(tmp_path, extra="\n[service]\nmax_connections = 20\n"),
                             tmp_path / "service.log")
    held = []
    try:
        held = [_connect(service) for _ in range(20)]  # silent connections: no headers yet
        import time

        time.sleep(0.5)
        with _connect(service) as extra:
            extra.settimeout(5)
            assert extra.recv(100).startswith(b"HTTP/1.1 503")  # at once, not after a header timeout
    finally:
        for s in held:
            s.close()
        service.stop()
