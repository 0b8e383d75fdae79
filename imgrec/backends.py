"""Pick the recognition backend for a run: in-process engines (default) or an HTTP API (cloud/self-hosted).

Backends are cached per process and per event loop (an httpx client belongs to the loop that made it),
so a worker that runs many shards loads its models and opens its connection pool once.
"""
from __future__ import annotations

import asyncio
import threading

from imgrec.connectors.backend import RecognitionBackend
from imgrec.connectors.client import AkSk, ApiClient, RetryPolicy
from imgrec.connectors.endpoints import Endpoints
from imgrec.connectors.iam import PasswordCredentials, TokenProvider
from imgrec.tasks.ratelimit import shared_bucket

from .settings import Settings

_cache: dict[tuple, RecognitionBackend] = {}
_local_recognizers: dict[str | None, object] = {}
_lock = threading.Lock()


def limiter_for(rate: float, global_limit: str | None):
    if global_limit and rate > 0:
        from imgrec.tasks.ratelimit import GlobalRateLimiter

        return GlobalRateLimiter(global_limit, rate)
    return shared_bucket(rate)


def _http_backend(settings: Settings, endpoint: str | None, concurrency: int, rate: float,
                  global_limit: str | None = None) -> ApiClient:
    client = settings.client
    endpoints = Endpoints.self_hosted(endpoint) if endpoint else (
        Endpoints.self_hosted(client.endpoint) if client.endpoint else Endpoints.cloud(client.region))
    aksk = token = None
    if client.access_key and client.secret_key:
        aksk = AkSk(client.access_key, client.secret_key.get_secret_value(), client.project_id or "")
    elif client.iam_user and client.iam_password:
        token = TokenProvider(endpoints.iam, PasswordCredentials(
            client.iam_domain or client.iam_user, client.iam_user, client.iam_password.get_secret_value(),
            client.iam_project_name, client.project_id))
    else:
        raise ValueError("the http backend needs HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK/HUAWEICLOUD_SDK_PROJECT_ID "
                         "or an IAM user and password (IMGREC_CLIENT__IAM_USER, IMGREC_CLIENT__IAM_PASSWORD)")
    return ApiClient(endpoints, aksk=aksk, token=token, project_id=client.project_id, concurrency=concurrency,
                     timeout=client.timeout_seconds, retry=RetryPolicy(attempts=client.retry_attempts),
                     limiter=limiter_for(rate, global_limit), transport=client.transport,
                     proxy=client.proxy.get_secret_value() if client.proxy else None,
                     prevalidate=False)  # the pipeline checks each image per endpoint before calling


def get_backend(kind: str, settings: Settings, endpoint: str | None = None, concurrency: int = 8,
                rate: float = 0.0, config: str | None = None, global_limit: str | None = None) -> RecognitionBackend:
    loop = asyncio.get_running_loop()
    key = (kind, endpoint, concurrency, rate, config, global_limit, id(loop))
    with _lock:
        backend = _cache.get(key)
        if backend is not None:
            return backend
        if kind == "local":
            from .local_backend import InProcessBackend
            from .recognizer import Recognizer

            # Engines (and their models) are shared by every loop of the process.
            recognizer = _local_recognizers.get(config)
            if recognizer is None:
                recognizer = _local_recognizers[config] = Recognizer(settings, threads=max(1, min(concurrency, 4)))
            backend = InProcessBackend(settings, limiter=limiter_for(rate, global_limit), recognizer=recognizer)  # type: ignore[arg-type]
        elif kind == "http":
            backend = _http_backend(settings, endpoint, concurrency, rate, global_limit)
        else:
            raise ValueError(f"unknown backend {kind!r} (local or http)")
        _cache[key] = backend
        return backend


def enabled_apis(kind: str, settings: Settings) -> list[str]:
    """Default API list: every image API the backend can serve."""
    from imgrec import schemas
    if kind == "local":
        from .engines import EngineRegistry

        registry = EngineRegistry(settings)
        return [a for a in schemas.IMAGE_APIS if registry.enabled(a)]
    # A remote service: the six current (v2/v3) image APIs.
    return [a for a in schemas.IMAGE_APIS if not schemas.spec(a).deprecated]
