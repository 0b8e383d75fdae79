"""The self-hosted Image Recognition service: the reference's 11 routes and IAM's token route on Starlette.

Every response carries X-Request-Id; every failure is the reference's {"error_code", "error_msg"} body.
Request bodies are read in chunks and refused (APIG.0201) as soon as they pass the size limit.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import re
import time
import uuid
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from imgrec import schemas
from imgrec.schemas.common import ApiSpec
from imgrec.schemas.errors import ApiError

from ..engines.base import ImageOutput
from ..recognizer import Recognizer
from ..settings import Settings
from . import console, observability, simulate
from .auth import Authenticator
from imgrec.connectors.urlfetch import capped

log = logging.getLogger("imgrec.service")
MAX_JSON_DEPTH = 32


class JSONResponse(Response):
    """orjson, not json.dumps: 0.01 ms instead of 0.5 ms for an image-out answer's 100 KB of base64."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RequestMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): assigns the request id and stamps it on the response; for
    an API's request (its handler names the API in the request's state), observes status, error code and
    latency for /metrics."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        observability.request_id_var.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if "api" in state:
                observability.observe(state["api"], status, state.get("error_code"), time.perf_counter() - started)


def error_response(err: ApiError, request: Request | None = None) -> JSONResponse:
    request_id = request.state.request_id if request is not None else ""
    if err.status >= 500:
        log.error("request %s failed: %s", request_id, err)
    else:
        log.info("request %s refused: %s", request_id, err)
    headers = {"Retry-After": "1"} if err.status == 429 else None
    return JSONResponse(err.to_wire(), status_code=err.status, headers=headers)


def _body(request: Request, limit: int):
    """The request's body as it streams, refused (APIG.0201) from its declared length or once past `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError.of("APIG.0201", f"declared {declared} bytes")
    return capped(request.stream(), limit, "APIG.0201")


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _body(request, limit)])


async def hash_body(request: Request, limit: int) -> str:
    """SHA-256 of the body, read as it streams and not kept (an unknown access key's request)."""
    digest = hashlib.sha256()
    async for chunk in _body(request, limit):
        digest.update(chunk)
    return digest.hexdigest()


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NESTING = np.zeros(256, np.int8)
_NESTING[[ord("["), ord("{")]] = 1
_NESTING[[ord("]"), ord("}")]] = -1
# Values in one body: every parameter of every API is a scalar, so a request holds a few dozen at most; a
# body of a million numbers is refused before json.loads spends 40 ms holding the interpreter on it.
MAX_JSON_VALUES = 10_000
OFF_LOOP_BYTES = 64 * 1024  # bodies this large are parsed in a worker thread: the event loop keeps answering


def json_shape(body: bytes) -> tuple[int, int]:
    """(how deeply arrays and objects nest, how many commas separate values), counted on the bytes outside the
    strings, before any parsing: a 2 MB body costs a few milliseconds, whatever its shape. Without a backslash
    (base64 has none) every quote opens or closes a string, found with bytes.find (a 300 KB image: 0.02 ms);
    with escapes the strings are blanked by a regex (1.4 ms). More than MAX_JSON_VALUES strings is answered
    as that many values without looking further."""
    if b"\\" in body:
        structure = np.frombuffer(_STRING.sub(b'""', body), np.uint8)
    else:
        outside, pos, strings = [], 0, 0
        while (start := body.find(b'"', pos)) >= 0:
            outside.append(body[pos:start])
            end = body.find(b'"', start + 1)
            if end < 0:  # unterminated: the rest is outside any string (json.loads refuses it anyway)
                pos = start + 1
                break
            strings += 1
            if strings > MAX_JSON_VALUES:
                return 0, strings
            pos = end + 1
        outside.append(body[pos:])
        structure = np.frombuffer(b"".join(outside), np.uint8)
    steps = _NESTING[structure]
    steps = steps[steps != 0]
    depth = int(np.cumsum(steps, dtype=np.int32).max()) if steps.size else 0
    return depth, int(np.count_nonzero(structure == ord(",")))


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError.of("AIS.0011", "empty body")
    depth, values = json_shape(body)
    if depth > MAX_JSON_DEPTH:
        raise ApiError.of("AIS.0014", "JSON nested too deeply")
    if values > MAX_JSON_VALUES:
        raise ApiError.of("AIS.0014", f"more than {MAX_JSON_VALUES} JSON values")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError.of("AIS.0014") from None


async def off_loop(body: bytes, fn, *args):
    """`fn(*args)` in a worker thread when the body is large (JSON parsing and base64 decoding of megabytes),
    inline when it is small (a thread hop costs more than the work)."""
    if len(body) >= OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def parse_form(request: Request, body: bytes, limit: int) -> tuple[dict[str, Any], bytes | None]:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16, max_part_size=limit)
    except Exception:
        raise ApiError.of("AIS.0014", "malformed multipart body") from None
    fields: dict[str, Any] = {}
    file_bytes = None
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            if key != "file":
                raise ApiError.of("AIS.0012", f"unexpected file field {key}")
            file_bytes = await value.read()
        else:
            fields[key] = value
    return fields, file_bytes


class Admission:
    """Active-request slots, shared fairly: at most `total` requests hold a body or wait for an engine, one
    project at most `per_project` of them, and at most `url_per_project` URL fetches (the slow requests).
    A request past a limit is refused (429 APIG.0308) before its body is read; other projects are still
    served. One event loop per worker: plain counters, no lock."""

    def __init__(self, total: int, per_project: int, url_per_project: int):
        self.total, self.per_project, self.url_per_project = total, per_project, url_per_project
        self.active = 0
        self._projects: dict[str, int] = {}
        self._fetching: dict[str, int] = {}

    @classmethod
    def of(cls, settings: Settings) -> "Admission":
        """The configured shares. Unset, where several projects are configured (and auth tells them apart):
        all slots but an eighth kept for the others, and a quarter of the slots for one project's URL fetches
        (the slow requests); with a single project, or auth off (one trusted caller), every slot."""
        service = settings.service
        total = service.max_active_requests
        projects = {c.project_id for c in settings.credentials} | {u.project_id for u in settings.users}
        shared = settings.auth.enabled and len(projects) > 1
        per_project = service.max_active_per_project or (max(1, total - max(1, total // 8)) if shared else total)
        url_fetches = service.max_url_fetches_per_project or (max(1, total // 4) if shared else total)
        return cls(total, per_project, url_fetches)

    @contextlib.contextmanager
    def request(self, project: str):
        if self.active >= self.total:
            raise ApiError.of("APIG.0308", "the service is busy")
        if self._projects.get(project, 0) >= self.per_project:
            raise ApiError.of("APIG.0308", "this project has too many requests in progress")
        with _counted(self._projects, project):
            self.active += 1
            try:
                yield
            finally:
                self.active -= 1

    @contextlib.contextmanager
    def url_fetch(self, project: str):
        if self._fetching.get(project, 0) >= self.url_per_project:
            raise ApiError.of("APIG.0308", "this project has too many URL fetches in progress")
        with _counted(self._fetching, project):
            yield


@contextlib.contextmanager
def _counted(counts: dict[str, int], key: str):
    counts[key] = counts.get(key, 0) + 1
    try:
        yield
    finally:
        counts[key] -= 1
        if not counts[key]:
            del counts[key]


class ImageRecognitionService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.auth = Authenticator(settings)
        self.recognizer = Recognizer(settings)
        self.limit = settings.service.max_body_bytes
        self.admission = Admission.of(settings)
        self.started = time.time()
        rate = settings.service.rate_limit_per_second
        self.gateway = simulate.GatewayLimiter(rate) if rate > 0 else None
        self.faults = simulate.FaultInjector(settings.faults) if settings.faults.any else None
        self.simulating = settings.simulate.enabled
        self._rng = random.Random(settings.faults.seed)
        if self.simulating:
            log.warning("SIMULATION MODE: no recognition runs; every API answers an empty result after %.0f ms",
                        settings.simulate.latency_ms)
        if self.faults:
            log.warning("FAULT INJECTION is on: %s", settings.faults)

    def routes(self) -> list[Route]:
        routes = [Route(spec.path, self._handler(spec), methods=["POST"]) for spec in schemas.SPECS.values()]
        routes += [
            Route("/v3/auth/tokens", self.tokens, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.ready, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        if self.settings.console.enabled:
            routes.append(Route("/console", console.console, methods=["GET"]))
        return routes

    async def _inject(self, request: Request) -> Response | None:
        kind = self.faults.pick()
        if kind:
            observability.FAULTS.labels(kind).inc()
        if kind == "429":
            return error_response(ApiError.of("APIG.0308"), request)
        if kind == "500":
            return error_response(ApiError.of("AIP.0500"), request)
        if kind == "slow":
            await asyncio.sleep(self.settings.faults.slow_seconds)
        if kind == "bad_json":
            return Response(b'{"result": {"tags": [{"confidence": "9', media_type="application/json")
        if kind == "reset":
            return _ResetResponse()
        return None

    async def tokens(self, request: Request) -> Response:
        raw = await read_body(request, 1024 * 1024)
        body = await off_loop(raw, parse_json, raw)
        token, payload = self.auth.issue_token(body, request.client.host if request.client else "")
        return JSONResponse(payload, status_code=201, headers={"X-Subject-Token": token})

    def _private(self, request: Request) -> None:
        """With `[service] public_metrics = false`, /metrics and /ready want a token or a signature."""
        if self.settings.service.public_metrics:
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        self.auth.authenticate("GET", raw_path, list(request.query_params.multi_items()), headers, b"")

    async def metrics(self, request: Request) -> Response:
        self._private(request)
        body, content_type = observability.render()
        return Response(body, media_type=content_type)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - self.started, 1)})

    async def ready(self, request: Request) -> Response:
        """Per engine: enabled (configured on), and the problem that keeps it from working, if any."""
        self._private(request)
        registry = self.recognizer.registry
        problems = registry.problems()
        engines = {name: {"enabled": registry.enabled(name), "problem": problems.get(name)}
                   for name in schemas.SPECS}
        return JSONResponse({"status": "degraded" if problems else "ready", "engines": engines},
                            status_code=503 if problems else 200)

    def _handler(self, spec: ApiSpec):
        async def handle(request: Request) -> Response:
            request.state.api = spec.name  # observed by RequestMiddleware
            try:
                if self.faults is not None:
                    injected = await self._inject(request)
                    if injected is not None:
                        return injected
                return await self._handle(spec, request)
            except (ApiError, ClientDisconnect):
                raise  # answered by the app's exception handlers
            except Exception:
                log.exception("request %s: unexpected failure", request.state.request_id)
                raise ApiError.of("AIP.0500") from None

        handle.__name__ = spec.name
        return handle

    async def _handle(self, spec: ApiSpec, request: Request) -> Response:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}
        pre = self.auth.precheck(headers)  # before the body: a caller without valid credentials gets no buffer
        if pre.parsed is not None and pre.credential is None:
            self.auth.refuse_unknown_key(await hash_body(request, self.limit))  # streamed, never kept
        # before the body: memory stays bounded, and one project cannot take every slot
        with self.admission.request(request.path_params.get("project_id", "")):
            return await self._serve(spec, request, headers, pre)

    async def _serve(self, spec: ApiSpec, request: Request, headers: dict[str, str], pre) -> Response:
        body = await read_body(request, self.limit)
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        identity = self.auth.authenticate("POST", raw_path, list(request.query_params.multi_items()), headers, body,
                                          pre)
        self.auth.authorize_project(identity, request.path_params.get("project_id"))
        if self.gateway is not None and not self.gateway.allow():
            raise ApiError.of("APIG.0308")
        content_type = headers.get("content-type", "")
        file_upload = content_type.strip().lower().startswith("multipart/form-data")
        if file_upload:
            if spec.input != "image_or_file":
                raise ApiError.of("AIS.0014", "this endpoint takes a JSON body")
            fields, file_bytes = await parse_form(request, body, self.limit)
            parsed = spec.parse(fields, file_bytes=file_bytes, from_form=True)
        else:
            parsed = await off_loop(body, lambda: spec.parse(parse_json(body)))
        parsed.tenant = identity.project_id if identity is not None else ""
        if self.simulating:
            await simulate.simulated_latency(self.settings.simulate, self._rng)
            return JSONResponse(spec.empty.to_wire())
        if parsed.url is not None:
            with self.admission.url_fetch(parsed.tenant):
                result = await self.recognizer.execute(parsed)
        else:
            result = await self.recognizer.execute(parsed)
        if isinstance(result, ImageOutput):
            if file_upload:  # "on success the image file's bytes are returned"
                return Response(result.data, media_type=result.media_type)
            return JSONResponse({"result": base64.b64encode(result.data).decode("ascii")})
        return JSONResponse(result.to_wire())


class _ResetResponse(Response):
    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope, receive, send) -> None:
        await _inject_reset(send)


async def _inject_reset(send) -> None:
    """Start a reply, then stop: the server drops the connection mid-body, as a network reset would (uvicorn
    logs one line, "returned without completing response", instead of an exception's traceback)."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"result": ', "more_body": True})


async def api_error(request: Request, err: ApiError) -> Response:
    """Every route's ApiError, answered as the reference does."""
    request.state.error_code = err.code
    return error_response(err, request)


async def client_disconnect(request: Request, exc: ClientDisconnect) -> Response:
    """The client gave up (its timeout) while sending: not a server failure."""
    log.info("request %s: client disconnected", request.state.request_id)
    request.state.error_code = "CLIENT.DISCONNECT"
    return Response(status_code=499)  # nginx's "client closed request"; nobody receives it


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response(ApiError.of("APIG.0101", request.url.path), request)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(ApiError.of("AIS.0013", request.method), request)


def create_app(settings: Settings | None = None) -> Starlette:
    if settings is None:  # uvicorn's factory call in a process started by `imgrec serve`
        settings = Settings.load()
        observability.configure_logging(settings.log.level, settings.log.format)
    service = ImageRecognitionService(settings)
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.recognizer.close()

    app = Starlette(routes=service.routes(), middleware=[Middleware(RequestMiddleware)], lifespan=lifespan,
                    exception_handlers={ApiError: api_error, ClientDisconnect: client_disconnect, 404: not_found,
                                        405: method_not_allowed})
    app.state.service = service
    return app
