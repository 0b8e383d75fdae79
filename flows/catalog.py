"""Prefect flows: `catalog_tagging` (incremental, nightly) and `backfill` (prefix / date range, optional force).

Orchestration only: list -> plan shards -> recognize shards (two at a time, one Prefect task each; asyncio
inside) -> report. Everything heavy lives in plain functions under `tasks/`, testable without Prefect.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from imgrec import run_backend
from imgrec.logs import install as install_log_redaction
from imgrec.connectors.ratelimit import ensure_global_limit
from imgrec.connectors.source import IMAGE_SUFFIXES, open_source
from imgrec.settings import Settings
from imgrec.tasks import damage, formats, listing, planning, progress, report, run_context, shard_worker, similar, writing
from imgrec.schemas.run import RunParameters, is_bucket
from imgrec.tasks.job import Job

PARALLEL_SHARDS = 2


@lru_cache(maxsize=8)
def _settings(config: str | None) -> Settings:
    """Read once per worker process, not once per shard."""
    return Settings.load(config)


@lru_cache(maxsize=8)
def _source(source: str):
    """One source (and boto3 client, which is thread-safe) per location per process, not one per shard."""
    return open_source(source)


@task(name="list-objects", cache_policy=NONE)
def list_objects_task(job: Job) -> listing.Listing:
    return listing.list_objects(open_source(job.source), job)


@task(name="plan-shards", cache_policy=NONE)
def plan_shards_task(job: Job, publish: bool = True) -> list[planning.Shard]:
    return planning.plan_shards(job, publish)


@task(name="recognize-shard", cache_policy=NONE, retries=2, retry_delay_seconds=2)
async def recognize_shard_task(job: Job, shard: planning.Shard) -> dict[str, Any]:
    settings = _settings(job.config)
    async with run_backend.borrowed(settings, job) as backend:
        stats = await shard_worker.recognize_shard(shard.index, shard.path, job, _source(job.source), backend,
                                                   run_backend.fingerprinter(settings, job))
    return stats.to_dict()


@task(name="near-duplicates", cache_policy=NONE)
def near_duplicates_task(job: Job) -> dict[str, int]:
    """The run's fingerprints into the catalog's index, their new near-duplicate pairs into the table."""
    logger = get_run_logger()
    try:
        found = similar.find_near_duplicates(job, formats.format_of(job))
    except Exception as exc:  # the fingerprints are in the embeddings table: the next run indexes them
        logger.warning("near-duplicates not searched this run (%s: %s); the next run adds this run's "
                       "fingerprints to the index", type(exc).__name__, exc)
        return {"failed": 1}
    logger.info("near-duplicates: %d images fingerprinted, %d new pairs (%d exact copies); %d images "
                          "in the index", found["fingerprinted"], found["pairs"], found["exact"], found["indexed"])
    return found


@task(name="report", cache_policy=NONE)
def report_task(job: Job, listed: listing.Listing, shard_stats: list[dict[str, Any]],
                quarantined: list[str] | None = None, duplicates: dict[str, int] | None = None) -> dict[str, Any]:
    stats = [shard_worker.ShardStats.from_dict(s) for s in shard_stats]
    summary = report.summarize(job, listed.listed, stats, datetime.now(timezone.utc))
    summary["quarantined"] = quarantined or []
    summary["passed_over"] = report.passed_over(listed)
    summary["near_duplicates"] = duplicates
    report.write_runs_row(job, summary)
    formats.format_of(job).ensure(job.run_date, job.run_id)  # tables this run left empty read all the same
    try:
        from imgrec.warehouse import refresh

        # A folder's imgrec.duckdb: one file for BI tools, a table each (a bucket's tables are read in place)
        refresh(job.out, job.table_format, job.iceberg_catalog)
    except Exception as exc:  # a convenience over the tables, which are the record
        get_run_logger().warning("could not refresh the DuckDB catalog file: %s", exc)
    summary["report_paths"] = report.write_report(job, summary)
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


async def _run_shards(job: Job, settings: Settings, shards: list[planning.Shard]) -> list[dict[str, Any]]:
    """Every shard through the same Prefect task, `recognize_shard_task`. With threads they run as coroutines
    on the flow's own event loop (PARALLEL_SHARDS at once), so they share the one backend the flow opened:
    an HTTP client and its connections and token are bound to a loop, and a task runner's threads would each
    need their own. On Dask each worker process opens its own backend per shard."""
    if job.task_runner == "dask":
        return await asyncio.to_thread(shards_on_dask(job.dask_address), job, shards)
    gate = asyncio.Semaphore(PARALLEL_SHARDS)

    async def one(shard: planning.Shard) -> dict[str, Any]:
        async with gate:
            return await recognize_shard_task(job, shard)

    async with run_backend.lending(settings, job):  # one backend for the run, closed when it ends
        try:
            return list(await asyncio.gather(*(one(s) for s in shards)))
        finally:
            run_context.end(job.run_id)


async def _log_progress(logger, counter: progress.Progress) -> None:
    """One progress line every LOG_EVERY_S seconds while shards run (the log, not only a terminal's bar)."""
    while True:
        await asyncio.sleep(progress.LOG_EVERY_S)
        logger.info("progress: %s", counter.line())


def _listed(job: Job, logger) -> listing.Listing:
    listed = list_objects_task(job)
    if listed.not_images:
        logger.info("%d objects under the source were not listed: their names do not end in an image's "
                    "extension (%s)%s", listed.not_images, ", ".join(sorted(IMAGE_SUFFIXES)),
                    "" if job.sniff else "; --sniff takes those whose first bytes are an image's")
    if not listed.listed:
        logger.warning("no images listed under %s%s: check the source, --prefix, --include/--exclude and "
                       "--since/--until (%s)", job.source, f" (prefix {job.prefix!r})" if job.prefix else "",
                       report.passed_over(listed) or "nothing was passed over")
    return listed


def dry_run(job: Job) -> dict[str, Any]:
    """List and plan as the run would, without calling or writing to the output: what it would cost."""
    logger = get_run_logger()
    try:
        listed = _listed(job, logger)
        shards = plan_shards_task(job, publish=False)
    finally:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    plan = report.plan_summary(job, listed, shards)
    logger.info("dry run %s: %s", job.run_id, report.plan_line(plan))
    return plan


async def run_job(job: Job, settings: Settings) -> dict[str, Any]:
    if job.dry_run:
        return dry_run(job)
    logger = get_run_logger()
    if not is_bucket(job.out) and not os.path.exists(job.out):
        logger.info("no warehouse at %s yet: starting a new one", job.out)
    output = job.output
    # One run at a time per output: two would both process the same new objects (a lock file, or a lock
    # object created by a conditional PUT in a bucket).
    with output.lock(job.run_id):
        if job.global_limit and job.rate_per_second > 0:
            await ensure_global_limit(job.global_limit, job.rate_per_second)
        tables = formats.format_of(job)
        recovered = writing.recover(output, tables)
        if recovered["finished"] or recovered["dropped"]:
            logger.info("recovered an interrupted run: %s", recovered)
        # a ledger or table file damaged from outside: moved aside with its shard, whose images are redone
        quarantined = damage.quarantine(output, job.run_id, job.work_dir,
                                        formats.open_format(job.table_format, output, job.iceberg_catalog).damaged())
        if quarantined:
            logger.warning("moved %d damaged file(s) aside to %s/%s: their images are done again",
                           len(quarantined), damage.QUARANTINE, job.run_id)
        if folded := writing.compact_ledger(output, job.run_id, job.work_dir):
            logger.info("compacted %d ledger files into one", folded)
        if folded := writing.compact_ledger(output, job.run_id, job.work_dir, writing.ANSWERS):
            logger.info("compacted %d answers files into one", folded)
        tables.prepare()
        listed = _listed(job, logger)
        shards = plan_shards_task(job)
        logger.info("run %s: %d objects listed, %d shards, %d calls planned", job.run_id, listed.listed,
                    len(shards), sum(s.pending_calls for s in shards))
        counter = run_context.of(job).progress
        counter.start(sum(s.objects for s in shards))
        reporting = asyncio.create_task(_log_progress(logger, counter))
        try:
            stats = await _run_shards(job, settings, shards)
        finally:
            reporting.cancel()
        duplicates = near_duplicates_task(job) if job.fingerprints else None
        summary = report_task(job, listed, list(stats), quarantined, duplicates)
        if output.local_root is None:  # a bucket output's local copies (listing, ledger, tables) are spent
            shutil.rmtree(job.work_dir, ignore_errors=True)
    logger.info("run %s finished: %s", job.run_id, summary["status"])
    failure = report.failure_of(summary, job.max_failed_share)
    if failure is not None:
        raise failure  # the flow run ends Failed; the tables and the report are written all the same
    return summary


@flow(name="catalog-tagging", log_prints=True)
async def catalog_tagging(run: RunParameters) -> dict[str, Any]:
    """Tag every image that is new or changed since its last successful result (same API and parameters)."""
    return await run_job(*run_backend.resolve_run("catalog-tagging", run))


@flow(name="catalog-backfill", log_prints=True)
async def backfill(run: RunParameters) -> dict[str, Any]:
    """Process a prefix and/or last-modified range (`prefix`, `modified_since`, `modified_until`); `force`
    redoes objects that already succeeded."""
    return await run_job(*run_backend.resolve_run("catalog-backfill", run))


logging.getLogger("imgrec").setLevel(logging.INFO)
install_log_redaction()  # deployments import this module without the CLI: no secret in any log line
