"""Prefect flows: `catalog_tagging` (incremental, nightly) and `backfill` (prefix / date range, optional force).

Orchestration only: list -> plan shards -> recognize shards (two at a time, one Prefect task each; asyncio
inside) -> report. Everything heavy lives in plain functions under `tasks/`, testable without Prefect.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from contextlib import contextmanager
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from imgrec import schemas
from imgrec.connectors.storage import open_storage
from imgrec.backends import enabled_apis, get_backend
from imgrec.settings import Settings
from imgrec.tasks import listing, planning, progress, recognize, report, writing
from imgrec.tasks.job import Job
from imgrec.tasks.ratelimit import ensure_global_limit

PARALLEL_SHARDS = 2


@lru_cache(maxsize=8)
def _settings_for(config: str | None) -> Settings:
    return Settings.load(config) if config else Settings.load()


def _settings(job: Job) -> Settings:
    """Read once per worker process, not once per shard."""
    return _settings_for(job.config)


@lru_cache(maxsize=8)
def _storage(source: str):
    """One storage (and boto3 client, which is thread-safe) per source per process, not one per shard."""
    return open_storage(source)


@task(name="list-objects", cache_policy=NONE)
def list_objects_task(job: Job) -> int:
    return listing.list_objects(open_storage(job.source), job)


@task(name="plan-shards", cache_policy=NONE)
def plan_shards_task(job: Job) -> list[planning.Shard]:
    return planning.plan_shards(job)


@task(name="recognize-shard", cache_policy=NONE, retries=2, retry_delay_seconds=2)
async def recognize_shard_task(job: Job, shard: planning.Shard) -> dict[str, Any]:
    settings = _settings(job)
    backend = get_backend(job.backend, settings, job.endpoint, job.concurrency, job.rate_per_second, job.config,
                          job.global_limit)
    stats = await recognize.recognize_shard(shard.index, shard.path, job, _storage(job.source), backend)
    return stats.to_dict()


@task(name="report", cache_policy=NONE)
def report_task(job: Job, listed: int, shard_stats: list[dict[str, Any]]) -> dict[str, Any]:
    stats = [recognize.ShardStats.from_dict(s) for s in shard_stats]
    summary = report.summarize(job, listed, stats, datetime.now(timezone.utc),
                               _settings(job).pipeline.unit_price_per_call)
    report.write_runs_row(job, summary)
    paths = report.write_report(job, summary)
    summary["report_paths"] = {k: str(v) for k, v in paths.items()}
    try:
        report.publish_artifacts(summary)
    except Exception as exc:  # artifacts are a convenience; the files are the record
        get_run_logger().warning("could not publish Prefect artifacts: %s", exc)
    return summary


def shards_on_dask(address: str | None):
    """A subflow whose task runner is Dask: shards run on the cluster's workers (prefect-dask).
    Without an address, a local cluster of one single-threaded worker process per core."""
    from prefect_dask import DaskTaskRunner

    runner = DaskTaskRunner(address=address) if address else DaskTaskRunner(
        cluster_kwargs={"n_workers": os.cpu_count() or 2, "threads_per_worker": 1, "processes": True})

    @flow(name="catalog-shards-on-dask", task_runner=runner)
    def run_shards(job: Job, shards: list[planning.Shard]) -> list[dict[str, Any]]:
        futures = [recognize_shard_task.submit(job, shard) for shard in shards]
        return [future.result() for future in futures]

    return run_shards


@contextmanager
def exclusive(out: Path):
    """One run at a time per output folder: two writers would both process the same new objects."""
    lock_path = out / "_state" / "run.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another imgrec run is writing to {out}") from None
        yield


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def make_job(flow_name: str, source: str, out: str | None, apis: list[str] | None, backend: str | None,
             endpoint: str | None, mode: str | None, concurrency: int | None, rate_per_second: float | None,
             shard_size: int | None, prefix: str, modified_since: datetime | None, modified_until: datetime | None,
             force: bool, params: dict[str, dict[str, Any]] | None, config: str | None,
             global_limit: str | None = None, task_runner: str = "threads", dask_address: str | None = None) -> Job:
    settings = Settings.load(config) if config else Settings.load()
    p = settings.pipeline
    backend = backend or p.backend
    chosen = list(apis or p.apis or enabled_apis(backend, settings))
    for api in chosen:
        spec = schemas.spec(api)
        if spec.input == "url_only":
            raise ValueError(f"{api} takes a video URL, not catalog images; it cannot run in the image pipeline")
    # Each API once (a repeated name would write its rows twice), in the reference's order: the tagging APIs
    # then come before main-object detection, whose lighter analysis could otherwise run as a second pass.
    wanted = set(chosen)
    chosen = [api for api in schemas.SPECS if api in wanted]
    job = Job(run_id=new_run_id(), flow=flow_name, source=source, out=str(Path(out or p.out).resolve()),
              apis=chosen, backend=backend, endpoint=endpoint or settings.client.endpoint, mode=mode or p.mode,
              concurrency=concurrency or p.concurrency,
              rate_per_second=p.rate_per_second if rate_per_second is None else rate_per_second,
              global_limit=global_limit or p.global_limit, shard_size=shard_size or p.shard_size, prefix=prefix,
              modified_since=modified_since, modified_until=modified_until, task_runner=task_runner,
              dask_address=dask_address, force=force, params={**p.params, **(params or {})},
              config=str(Path(config).resolve()) if config else os.environ.get("IMGREC_CONFIG"))
    for api in job.apis:
        job.resolved_params(api)  # bad parameters fail the run before anything is listed
    if not job.apis:
        raise ValueError("no APIs to run: none is enabled for this backend")
    return job


async def run_job(job: Job) -> dict[str, Any]:
    logger = get_run_logger()
    out = job.out_path
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        if job.global_limit and job.rate_per_second > 0:
            await ensure_global_limit(job.global_limit, job.rate_per_second)
        recovered = writing.recover(out)
        if recovered["finished"] or recovered["dropped"]:
            logger.info("recovered an interrupted run: %s", recovered)
        if folded := writing.compact_ledger(out, job.run_id):
            logger.info("compacted %d ledger files into one", folded)
        listed = list_objects_task(job)
        shards = plan_shards_task(job)
        logger.info("run %s: %d objects listed, %d shards, %d calls planned", job.run_id, listed, len(shards),
                    sum(s.pending_calls for s in shards))
        progress.start(sum(s.objects for s in shards))
        if job.task_runner == "dask":
            stats = await asyncio.to_thread(shards_on_dask(job.dask_address), job, shards)
        else:
            gate = asyncio.Semaphore(PARALLEL_SHARDS)

            async def one(shard: planning.Shard) -> dict[str, Any]:
                async with gate:
                    return await recognize_shard_task(job, shard)

            stats = await asyncio.gather(*(one(s) for s in shards))
        summary = report_task(job, listed, list(stats))
    logger.info("run %s finished: %s", job.run_id, summary["status"])
    return summary


@flow(name="catalog-tagging", log_prints=True)
async def catalog_tagging(source: str, out: str | None = None, apis: list[str] | None = None,
                          backend: str | None = None, endpoint: str | None = None, mode: str | None = None,
                          concurrency: int | None = None, rate_per_second: float | None = None,
                          shard_size: int | None = None, params: dict[str, dict[str, Any]] | None = None,
                          config: str | None = None, global_limit: str | None = None,
                          task_runner: str = "threads", dask_address: str | None = None) -> dict[str, Any]:
    """Tag every image that is new or changed since its last successful result (same API and parameters)."""
    job = make_job("catalog-tagging", source, out, apis, backend, endpoint, mode, concurrency, rate_per_second,
                   shard_size, "", None, None, False, params, config, global_limit, task_runner, dask_address)
    return await run_job(job)


@flow(name="catalog-backfill", log_prints=True)
async def backfill(source: str, prefix: str = "", modified_since: datetime | None = None,
                   modified_until: datetime | None = None, force: bool = False, out: str | None = None,
                   apis: list[str] | None = None, backend: str | None = None, endpoint: str | None = None,
                   mode: str | None = None, concurrency: int | None = None, rate_per_second: float | None = None,
                   shard_size: int | None = None, params: dict[str, dict[str, Any]] | None = None,
                   config: str | None = None, global_limit: str | None = None,
                   task_runner: str = "threads", dask_address: str | None = None) -> dict[str, Any]:
    """Process a prefix and/or last-modified range; `force` redoes objects that already succeeded."""
    job = make_job("catalog-backfill", source, out, apis, backend, endpoint, mode, concurrency, rate_per_second,
                   shard_size, prefix, modified_since, modified_until, force, params, config, global_limit,
                   task_runner, dask_address)
    return await run_job(job)


logging.getLogger("imgrec").setLevel(logging.INFO)
