"""`imgrec run`: one catalog run from the command line, on the Prefect flows."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from imgrec.schemas import CATALOG_APIS


def parse_params(values: list[str]) -> dict[str, dict[str, Any]]:
    """--param image_tagging.threshold=30 -> {"image_tagging": {"threshold": 30}} (values parsed as JSON)."""
    params: dict[str, dict[str, Any]] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        api, dot, key = name.partition(".")
        if not sep or not dot:
            raise typer.BadParameter(f"--param takes API.NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params.setdefault(api, {})[key] = value
    return params


def one_line(exc) -> str:
    """A pydantic ValidationError as one line: where, and what is wrong there."""
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg'].removeprefix('Value error, ')}"


def _progress_bar(stop: threading.Event) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from imgrec.tasks import run_context

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task_id = bar.add_task("images", total=None)
        while not stop.wait(0.2):
            if (run := run_context.latest()) is not None:
                bar.update(task_id, total=run.progress.total or None, completed=run.progress.done)


def _floors(given: list[str]) -> dict[str, float] | None:
    """`--min-confidence image_tagging=50`: over the defaults, per API."""
    if not given:
        return None
    from imgrec.schemas.run import RunParameters

    floors = dict(RunParameters().min_confidence)
    for item in given:
        api, sep, value = item.partition("=")
        try:
            floors[api.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--min-confidence {item!r}: give API=N, e.g. image_tagging_v1=60") from None
    return floors


def run(
    source: str = typer.Argument(..., help="A folder, s3://bucket/prefix or obs://bucket/prefix"),
    out: Optional[str] = typer.Option(None, help="Where tables, ledger and reports land: a folder (default "
                                      "./warehouse), s3://bucket/prefix or obs://bucket/prefix"),
    table_format: Optional[str] = typer.Option(None, help="parquet (Hive-partitioned files, the default) or "
                                               "iceberg (Apache Iceberg tables in a catalog)"),
    iceberg_catalog: Optional[str] = typer.Option(None, help="Iceberg catalog: a SQLAlchemy URL (sqlite:///..., "
                                                  "postgresql+psycopg2://...) or a REST catalog URL; default "
                                                  "a SQLite file in a folder output"),
    apis: Optional[str] = typer.Option(None, help="Comma-separated API names (default: every enabled image API): "
                                       f"{', '.join(CATALOG_APIS)}; `imgrec apis` lists them"),
    backend: Optional[str] = typer.Option(None, help="local (in-process engines) or http"),
    endpoint: Optional[str] = typer.Option(None, help="http backend: self-hosted base URL (default: Huawei Cloud)"),
    mode: Optional[str] = typer.Option(None, help="inline (base64 in the body) or url (presigned URLs)"),
    concurrency: Optional[int] = typer.Option(None, help="Requests in flight at once"),
    rate: Optional[float] = typer.Option(None, help="Requests per second at most (0 = unlimited)"),
    shard_size: Optional[int] = typer.Option(None, help="Images per Prefect task"),
    global_limit: Optional[str] = typer.Option(None, help="Prefect global concurrency limit name: --rate "
                                               "then holds across every worker sharing the Prefect server"),
    param: list[str] = typer.Option([], help="API.NAME=VALUE request parameter, repeatable, e.g. "
                                    "image_tagging.threshold=30 (`imgrec apis` lists each API's parameters)"),
    task_runner: Optional[str] = typer.Option(None, help="threads, or dask (shards on a Dask cluster)"),
    dask_address: Optional[str] = typer.Option(None, help="Dask scheduler address (default: a local cluster)"),
    prefix: Optional[str] = typer.Option(None, help="Backfill: only keys under this prefix"),
    since: Optional[datetime] = typer.Option(None, help="Backfill: last-modified at or after"),
    until: Optional[datetime] = typer.Option(None, help="Backfill: last-modified before"),
    force: bool = typer.Option(False, help="Backfill: redo objects that already succeeded"),
    include: list[str] = typer.Option([], help="Only keys matching this glob (`*` also matches /), repeatable"),
    exclude: list[str] = typer.Option([], help="Not keys matching this glob, repeatable: --exclude '*/thumbs/*'"),
    sniff: bool = typer.Option(False, help="Also take objects without an image's extension whose first bytes "
                               "are an image's (one small read each)"),
    manifest: Optional[str] = typer.Option(None, help="Take the objects this file names instead of listing: JSON "
                                           "Lines, CSV or text of keys or s3:// / obs:// URIs of the source"),
    dry_run: bool = typer.Option(False, help="List and plan, print the calls per API and the estimated cost; "
                                 "call nothing, write nothing"),
    min_confidence: list[str] = typer.Option([], help="API=N: the tables keep that API's tags, boxes and faces "
                                             "at confidence N (0-100) or more, repeatable (default: "
                                             "60 for image_tagging_v1, media_tagging, media_tagging_det; "
                                             "API=0 keeps everything)"),
    similar: bool = typer.Option(True, help="Fingerprint new and changed images (inline mode) and find their "
                                 "near-duplicates in the whole catalog: the embeddings and near_duplicates "
                                 "tables (--no-similar: neither)"),
    similar_threshold: Optional[float] = typer.Option(None, help="Pairs at this fingerprint similarity or more "
                                                      "(0-1, cosine; default 0.87) are near-duplicates"),
    reuse: bool = typer.Option(True, help="Do not send an image whose bytes were already answered for the same "
                               "API and parameters: its rows come from its twin's answer (--no-reuse: call "
                               "for every image)"),
    unit_price: Optional[float] = typer.Option(None, help="What one call costs, for the estimated cost "
                                               "(per API: [pipeline] unit_prices)"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="TOML settings file"),
) -> None:
    """Run the catalog flow once; print the report. Exit 0 when the run completed."""
    from pydantic import ValidationError

    from imgrec.schemas.run import RunParameters

    given = dict(source=source, out=out, table_format=table_format, iceberg_catalog=iceberg_catalog,
                 apis=[a.strip() for a in apis.split(",") if a.strip()] if apis else None, backend=backend,
                 endpoint=endpoint, mode=mode, concurrency=concurrency, rate_per_second=rate, shard_size=shard_size,
                 params=parse_params(param) or None, config=str(config) if config else None,
                 global_limit=global_limit, task_runner=task_runner, dask_address=dask_address, prefix=prefix,
                 modified_since=since, modified_until=until, force=force or None, include=include or None,
                 exclude=exclude or None, sniff=sniff or None, manifest=manifest, dry_run=dry_run or None,
                 unit_price_per_call=unit_price, min_confidence=_floors(min_confidence),
                 similar=None if similar else False, similar_threshold=similar_threshold,
                 reuse=None if reuse else False)
    is_backfill = bool(prefix or since or until or force)
    try:  # checked here, before Prefect starts: a mistake fails in a second, in one line
        parameters = RunParameters(**{k: v for k, v in given.items() if v is not None})
        from imgrec.run_backend import resolve_run

        resolve_run("catalog-backfill" if is_backfill else "catalog-tagging", parameters)
    except ValidationError as exc:
        typer.echo(f"imgrec run: {one_line(exc)}", err=True)
        raise typer.Exit(2)
    except (ValueError, OSError) as exc:
        typer.echo(f"imgrec run: {exc}", err=True)
        raise typer.Exit(2)
    # Prefect's telemetry is off for runs from the command line (it can only fail noisily offline), and every
    # log line is redacted before Prefect's handlers see it.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "PREFECT_API_URL" not in os.environ:  # `imgrec server start` left one running: no temporary server
        from imgrec.local_server import running_url
        from imgrec.settings import Settings

        if (url := running_url(Settings.load(parameters.config).state_dir)) is not None:
            os.environ["PREFECT_API_URL"] = url
    from imgrec.logs import install

    install()
    from imgrec.flows.catalog import backfill, catalog_tagging

    flow_fn = backfill if is_backfill else catalog_tagging
    stop = threading.Event()
    bar = threading.Thread(target=_progress_bar, args=(stop,), daemon=True) if sys.stderr.isatty() else None
    if bar:
        bar.start()
    from imgrec.tasks.report import RunFailed, markdown

    failure: RunFailed | None = None
    try:
        summary = asyncio.run(flow_fn(parameters))
    except RunFailed as exc:
        summary, failure = exc.summary, exc
    except Exception as exc:
        typer.echo(f"imgrec run failed: {exc}", err=True)
        raise typer.Exit(1)
    finally:
        stop.set()
        if bar:
            bar.join()
    if summary.get("dry_run"):
        from imgrec.tasks.report import plan_text

        typer.echo(plan_text(summary))
        return
    typer.echo(markdown(summary))
    for kind, path in summary.get("report_paths", {}).items():
        typer.echo(f"report ({kind}): {path}")
    typer.echo(f"tables: {summary['parameters']['out']}")
    if not summary["listed"]:
        typer.echo(f"warning: no images listed under {source}" + (f" with prefix {prefix!r}" if prefix else ""),
                   err=True)
    if failure is not None:
        typer.echo(f"imgrec run failed: {failure}", err=True)
        raise typer.Exit(1)
