"""The async client: retry policy by error class against a scripted loopback server, token refresh,
pre-validation, and typed results against the real service."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgrec.connectors.client import AkSk, ApiClient, RetryPolicy
from imgrec.connectors.endpoints import Endpoints
from imgrec.connectors.iam import PasswordCredentials, TokenProvider
from imgrec.schemas.errors import ApiError
from tests.helpers import AK, DOMAIN, PASSWORD, PROJECT, PROJECT_NAME, SK, USER

OK_BODY = json.dumps({"result": [{"confidence": 0.97, "face_detail": {"h": 50, "w": 40, "x": 1, "y": 2},
                                  "label": "someone"}]}).encode()


class ScriptedServer:
    """Answers each API request with the next scripted behaviour; records what it received."""

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.requests: list[dict] = []
        self.tokens_issued = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body: bytes, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Request-Id", f"req-{len(outer.requests)}")
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v3/auth/tokens":
                    outer.tokens_issued += 1
                    payload = json.dumps({"token": {"expires_at": "2099-01-01T00:00:00.000000Z",
                                                    "project": {"id": PROJECT}}}).encode()
                    return self.reply(201, payload, [("X-Subject-Token", f"token-{outer.tokens_issued}")])
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                action = outer.script.pop(0) if outer.script else "ok"
                if action == "ok":
                    self.reply(200, OK_BODY)
                elif action == "429":
                    self.reply(429, b'{"error_code": "APIG.0308", "error_msg": "too fast"}', [("Retry-After", "1")])
                elif action == "500":
                    self.reply(500, b'{"error_code": "AIP.0500", "error_msg": "internal"}')
                elif action == "502-html":
                    self.reply(502, b"<html>bad gateway</html>")
                elif action == "400":
                    self.reply(400, b'{"error_code": "AIS.0503", "error_msg": "The image is damaged."}')
                elif action == "401-unless-token-2":
                    if self.headers.get("X-Auth-Token") == "token-2":
                        self.reply(200, OK_BODY)
                    else:
                        self.reply(401, b'{"error_code": "APIG.0301", "error_msg": "token expired"}')
                elif action == "truncated":
                    self.reply(200, OK_BODY[: len(OK_BODY) // 2])
                elif action == "slow":
                    time.sleep(2)
                    self.reply(200, OK_BODY)
                elif action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(params=["keepalive", "httpx"])
def scripted(request):
    """A scripted server; every test using it runs with both client transports."""
    servers = []

    def make(script):
        servers.append(ScriptedServer(script))
        servers[-1].transport = request.param
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)


def client_for(server, **kwargs) -> ApiClient:
    kwargs.setdefault("aksk", AkSk(AK, SK, PROJECT))
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("transport", server.transport)
    return ApiClient(Endpoints.self_hosted(server.base_url), **kwargs)


async def test_transient_failures_are_retried_until_success(scripted, photos):
    server = scripted(["500", "reset", "502-html", "truncated", "ok"])
    async with client_for(server) as client:
        result = await client.call("celebrity_recognition", image=photos["coffee"])
    assert result.attempts == 5 and result.response.result[0].label == "someone"
    assert len(server.requests) == 5


async def test_throttling_honours_retry_after(scripted, photos):
    server = scripted(["429", "ok"])
    started = time.perf_counter()
    async with client_for(server) as client:
        result = await client.call("celebrity_recognition", image=photos["coffee"])
    assert result.attempts == 2 and time.perf_counter() - started >= 1.0


async def test_timeouts_are_retried(scripted, photos):
    server = scripted(["slow", "ok"])
    async with client_for(server, timeout=0.5) as client:
        result = await client.call("celebrity_recognition", image=photos["coffee"])
    assert result.attempts == 2


async def test_validation_errors_are_never_retried(scripted, photos):
    server = scripted(["400", "ok"])
    async with client_for(server) as client:
        with pytest.raises(ApiError) as info:
            await client.call("celebrity_recognition", image=photos["coffee"])
    assert (info.value.code, info.value.status, info.value.attempts, info.value.retryable) == ("AIS.0503", 400, 1, False)
    assert info.value.request_id == "req-1" and len(server.requests) == 1


async def test_retries_give_up_with_the_last_error(scripted, photos):
    server = scripted(["500"] * 10)
    async with client_for(server, retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)) as client:
        with pytest.raises(ApiError) as info:
            await client.call("celebrity_recognition", image=photos["coffee"])
    assert (info.value.code, info.value.status, info.value.attempts) == ("AIP.0500", 500, 3)


async def test_bad_input_costs_no_call(scripted, photos):
    server = scripted([])
    async with client_for(server) as client:
        for kwargs, code in [({"image": photos["coffee"], "threshold": 3.0}, "AIS.0501"),
                             ({"image": b"GIF89a not really"}, "AIS.0021"),
                             ({}, "AIS.0011")]:
            with pytest.raises(ApiError) as info:
                await client.call("celebrity_recognition", **kwargs)
            assert info.value.code == code
    assert server.requests == []


async def test_token_is_cached_and_refreshed_once_on_an_auth_error(scripted, photos):
    server = scripted(["ok", "401-unless-token-2", "ok"])
    provider = TokenProvider(server.base_url, PasswordCredentials(DOMAIN, USER, PASSWORD, PROJECT_NAME))
    async with client_for(server, aksk=None, token=provider, project_id=PROJECT) as client:
        await client.call("celebrity_recognition", image=photos["coffee"])
        await client.call("celebrity_recognition", image=photos["coffee"])
        await client.call("celebrity_recognition", image=photos["coffee"])
    assert server.tokens_issued == 2
    assert [r["headers"]["X-Auth-Token"] for r in server.requests] == ["token-1", "token-1", "token-2", "token-2"]
    assert PASSWORD not in repr(provider)


async def test_signed_requests_look_like_the_sdk(scripted, photos):
    server = scripted(["ok"])
    async with client_for(server) as client:
        await client.call("celebrity_recognition", image=photos["coffee"], threshold=0.5)
    sent = server.requests[0]
    assert sent["path"] == f"/v2/{PROJECT}/image/celebrity-recognition"
    assert sent["headers"]["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;")
    assert sent["headers"]["X-Project-Id"] == PROJECT
    assert json.loads(sent["body"])["threshold"] == 0.5


async def test_a_proxy_carries_the_requests(scripted, photos):
    proxy = scripted(["ok"])  # plays the proxy: it sees the absolute URL the client asks it to reach
    endpoints = Endpoints.self_hosted("http://images.example.invalid:8080")
    async with ApiClient(endpoints, aksk=AkSk(AK, SK, PROJECT), retry=FAST, proxy=proxy.base_url,
                         transport=proxy.transport) as client:
        result = await client.call("celebrity_recognition", image=photos["coffee"])
    assert result.response.result[0].label == "someone"
    assert proxy.requests[0]["path"] == f"http://images.example.invalid:8080/v2/{PROJECT}/image/celebrity-recognition"


async def test_against_the_real_service(service, photos):
    async with ApiClient(Endpoints.self_hosted(service.base_url), aksk=AkSk(AK, SK, PROJECT)) as client:
        results = await asyncio.gather(*[client.call("celebrity_recognition", image=photos["astronaut"])
                                         for _ in range(4)])
        assert all(r.response.result[0].label == "Eileen Collins" for r in results)
        assert all(r.request_id for r in results)
        with pytest.raises(ApiError) as info:
            await client.call("image_tagging_v1", image=photos["coffee"])
        assert info.value.code == "AIS.0007"
    provider = TokenProvider(service.base_url, PasswordCredentials(DOMAIN, USER, PASSWORD, PROJECT_NAME))
    async with ApiClient(Endpoints.self_hosted(service.base_url), token=provider) as client:
        result = await client.call("celebrity_recognition", image=photos["astronaut"])
        assert client.project_id == PROJECT and result.response.result[0].label == "Eileen Collins"


def test_cloud_endpoints():
    endpoints = Endpoints.cloud("cn-north-4")
    assert endpoints.url("/v2/p/image/tagging") == "https://image.cn-north-4.myhuaweicloud.com/v2/p/image/tagging"
    assert endpoints.iam == "https://iam.cn-north-4.myhuaweicloud.com"
    assert Endpoints.self_hosted("http://127.0.0.1:8080/some/prefix").image == "http://127.0.0.1:8080"
