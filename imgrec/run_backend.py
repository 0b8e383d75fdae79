"""The recognition backend a run talks to: in-process engines (default) or an HTTP API (cloud/self-hosted).

Lifecycle: a flow opens one backend for its run (`lending`) and closes it when the run ends; its shard
tasks borrow it (`borrowed`). A shard that runs elsewhere (a Dask worker process) opens its own for the
shard and closes it after. Engines and their models are the exception: loading them is slow, so each
process keeps one `Recognizer` per settings file for its lifetime, shared by every backend it opens.
"""
from __future__ import annotations

import asyncio
import threading
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

from imgrec import schemas
from imgrec.connectors.backend import Fingerprinter, RecognitionBackend
from imgrec.connectors.client import AkSk, ApiClient, RetryPolicy
from imgrec.connectors.endpoints import Endpoints
from imgrec.connectors.iam import PasswordCredentials, TokenProvider
from imgrec.connectors.ratelimit import limiter_for
from imgrec.schemas.run import RunParameters, is_bucket
from imgrec.tasks import run_context
from imgrec.tasks.job import Job

from .settings import Settings

_recognizers: dict[Path | None, object] = {}
_lock = threading.Lock()


NO_CREDENTIALS = ("the http backend needs HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK/HUAWEICLOUD_SDK_PROJECT_ID or an IAM "
                  "user and password (IMGREC_CLIENT__IAM_USER, IMGREC_CLIENT__IAM_PASSWORD)")


def http_backend(settings: Settings, job: Job) -> ApiClient:
    client = settings.client
    endpoint = job.endpoint or client.endpoint
    endpoints = Endpoints.self_hosted(endpoint) if endpoint else Endpoints.cloud(client.region)
    aksk = token = None
    if client.access_key and client.secret_key:
        aksk = AkSk(client.access_key, client.secret_key.get_secret_value(), client.project_id or "")
    elif client.iam_user and client.iam_password:
        token = TokenProvider(endpoints.iam, PasswordCredentials(
            client.iam_domain or client.iam_user, client.iam_user, client.iam_password.get_secret_value(),
            client.iam_project_name, client.project_id))
    else:
        raise ValueError(NO_CREDENTIALS)
    return ApiClient(endpoints, aksk=aksk, token=token, project_id=client.project_id, concurrency=job.concurrency,
                     timeout=client.timeout_seconds, retry=RetryPolicy(attempts=client.retry_attempts),
                     limiter=limiter_for(job.rate_per_second, job.global_limit), transport=client.transport,
                     proxy=client.proxy.get_secret_value() if client.proxy else None,
                     prevalidate=False)  # the pipeline checks each image per endpoint before calling


def _recognizer(settings: Settings, job: Job):
    from .recognizer import Recognizer

    with _lock:
        recognizer = _recognizers.get(settings.config_file)
        if recognizer is None:
            threads = max(1, min(job.concurrency, 4))
            recognizer = _recognizers[settings.config_file] = Recognizer(settings, threads=threads)
    return recognizer


def local_backend(settings: Settings, job: Job) -> RecognitionBackend:
    from .inprocess_backend import InProcessBackend

    return InProcessBackend(_recognizer(settings, job), limiter=limiter_for(job.rate_per_second, job.global_limit))  # type: ignore[arg-type]


def fingerprinter(settings: Settings, job: Job) -> Fingerprinter | None:
    """The run's fingerprints are made in this process whatever its backend (None: the run makes none)."""
    from .inprocess_backend import LocalFingerprinter

    return LocalFingerprinter(_recognizer(settings, job)) if job.fingerprints else None


def open_backend(settings: Settings, job: Job) -> RecognitionBackend:
    return local_backend(settings, job) if job.backend == "local" else http_backend(settings, job)


@asynccontextmanager
async def lending(settings: Settings, job: Job) -> AsyncIterator[RecognitionBackend]:
    """The run's backend, open for the flow's duration and lent to its shard tasks on this event loop."""
    backend = open_backend(settings, job)
    lent, loop = run_context.of(job).lent, id(asyncio.get_running_loop())
    lent[loop] = backend
    try:
        yield backend
    finally:
        lent.pop(loop, None)
        await backend.aclose()


@asynccontextmanager
async def borrowed(settings: Settings, job: Job) -> AsyncIterator[RecognitionBackend]:
    """The flow's backend when this shard runs beside it; otherwise one of its own, closed after the shard."""
    backend = run_context.of(job).lent.get(id(asyncio.get_running_loop()))
    if backend is not None:
        yield backend
        return
    backend = open_backend(settings, job)
    try:
        yield backend
    finally:
        await backend.aclose()


def enabled_apis(kind: str, settings: Settings) -> list[str]:
    """The APIs a backend can serve: the local engines switched on, or a remote service's current APIs."""
    if kind == "local":
        from .engines import EngineRegistry

        return EngineRegistry(settings).enabled_apis()
    # A remote service: the current (v2/v3) APIs; the deprecated v1 ones are asked for by name.
    return [a for a, spec in schemas.SPECS.items() if not spec.deprecated]


def check_run_options(job: Job) -> None:
    """Mistakes in a run's options that would otherwise cost a whole run to notice."""
    now = datetime.now(timezone.utc)
    if job.modified_since and job.modified_since > now:
        raise ValueError(f"--since {job.modified_since.isoformat()} is in the future: no object can match")
    if job.modified_since and job.modified_until and job.modified_until <= job.modified_since:
        raise ValueError("--until must come after --since: no object can match")
    if job.manifest and not is_bucket(job.manifest) and not Path(job.manifest).is_file():
        raise ValueError(f"--manifest {job.manifest!r} is not a file")
    if job.manifest and job.prefix:
        raise ValueError("--manifest names the objects: --prefix would be ignored; give one of them")
    if not is_bucket(job.out) and not Path(job.out).exists() and not Path(job.out).parent.is_dir():
        raise ValueError(f"--out {job.out}: its parent folder {Path(job.out).parent} does not exist (a typo?); "
                         "create it first")


def answered_by(run: RunParameters, settings: Settings) -> str:
    """Who answers this run's calls: the in-process engines' build, or the service at its address."""
    if run.backend == "local":
        from .engines.base import build_digest

        return f"local:{build_digest(str(settings.models_dir))}"
    return f"http:{run.endpoint or settings.client.endpoint or 'huawei-cloud'}"


def resolve_run(flow: str, run: RunParameters) -> tuple[Job, Settings]:
    """A run's parameters over the settings file's [pipeline], checked (settings, source, APIs) before
    anything is listed; the CLI calls it too, before Prefect starts, so mistakes surface in a second."""
    settings = Settings.load(run.config)
    merged = run.over(settings.pipeline)
    config = str(settings.config_file) if settings.config_file else None
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    job = Job.create(flow, run_id, merged, enabled_apis(merged.backend, settings), config,
                     answered_by(merged, settings))
    if job.mode == "url" and not is_bucket(job.source):
        raise ValueError("--mode url sends presigned URLs of bucket objects: give an s3:// or obs:// source")
    if not is_bucket(job.source) and not Path(job.source).is_dir():
        raise ValueError(f"source {job.source!r} is not a folder (or s3://bucket/prefix, obs://bucket/prefix)")
    check_run_options(job)
    if job.backend == "local":
        from .engines import EngineRegistry

        if problems := EngineRegistry(settings).problems(job.apis):
            raise ValueError("; ".join(f"{api}: {problem}" for api, problem in problems.items()))
    else:
        endpoint = job.endpoint or settings.client.endpoint
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"--endpoint {endpoint!r}: give the service's base URL with its scheme, "
                             f"e.g. http://{endpoint}")
        client = settings.client  # no credentials fails here, not on every call
        if not (client.access_key and client.secret_key) and not (client.iam_user and client.iam_password):
            raise ValueError(NO_CREDENTIALS)
    if job.fingerprints:
        from .engines.fingerprint import fingerprint_problem

        if problem := fingerprint_problem(settings):
            raise ValueError(f"near-duplicates need the local classifier: {problem} (or run with --no-similar)")
    return job, settings
