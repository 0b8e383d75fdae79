"""`imgrec serve` (the self-hosted API), `imgrec run` (the catalog pipeline), `imgrec apis` (what answers)."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Optional

import typer

from .settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def load_settings(config: Path | None) -> Settings:
    """Settings, or one line naming what is wrong in them (a misspelt key, a bad value) and exit 2."""
    from pydantic import ValidationError

    try:
        return Settings.load(config)
    except ValidationError as exc:
        from .cli_run import one_line

        typer.echo(f"imgrec: {one_line(exc)}", err=True)
    except (OSError, ValueError) as exc:  # ValueError: TOML that does not parse (tomllib names line and column)
        typer.echo(f"imgrec: {config}: {exc}" if config else f"imgrec: {exc}", err=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"imgrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit")) -> None:
    """imgrec: self-hosted Huawei Image Recognition API and catalog-tagging pipeline.

    Settings: a TOML file (--config, or IMGREC_CONFIG) and IMGREC_* variables; every section and key is
    in imgrec/settings.py, and an unknown key is refused at start-up."""


def _param_text(param) -> str:
    if param.choices is not None:
        allowed = "|".join(map(str, param.choices))
    elif param.lo is not None or param.hi is not None:
        allowed = f"{'(' if param.lo_open else '['}{param.lo:g}, {param.hi:g}{')' if param.hi_open else ']'}"
        allowed += ", else the default" if param.out_of_range == "default" else ""
    else:
        allowed = param.kind
    return f"{param.name}={param.default} ({allowed})"


@app.command()
def apis(config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="TOML config file")) -> None:
    """Every API: its path, its engine and whether it is on, and its parameters (defaults, ranges), the
    names `imgrec run --apis` and `--param API.NAME=VALUE` take."""
    from . import schemas
    from .engines import ENGINES, EngineRegistry

    registry = EngineRegistry(load_settings(config))
    problems = registry.problems()
    for name, spec in schemas.SPECS.items():
        state = ("on" if not problems.get(name) else f"not working: {problems[name]}") if registry.enabled(name) \
            else "off ([engines] enabled = false)"
        catalog = "catalog API" if name in schemas.CATALOG_APIS else "not a catalog API (takes a video URL)"
        typer.echo(f"{name}  POST {spec.path}")
        typer.echo(f"    engine {ENGINES[name].__name__}: {state}; {catalog}"
                   + ("; deprecated in the reference" if spec.deprecated else ""))
        typer.echo(f"    parameters: {', '.join(_param_text(p) for p in spec.params) or 'none'}")


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default from config, else 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default from config, else 8080)"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="TOML config file"),
    workers: int = typer.Option(None, help="Worker processes behind the one port"),
    log_level: str = typer.Option(None, help="debug, info, warning or error (default from config, else info)"),
    log_format: str = typer.Option(None, help="text, or json (one object per line, with request_id)"),
) -> None:
    """Run the wire-compatible Image Recognition API on uvicorn."""
    import uvicorn

    if log_level:  # through the environment, so that uvicorn's worker processes read them too
        os.environ["IMGREC_LOG__LEVEL"] = log_level
    if log_format:
        os.environ["IMGREC_LOG__FORMAT"] = log_format
    settings = load_settings(config)
    from .engines import EngineRegistry

    if problems := EngineRegistry(settings).problems():  # fail here, not with an error on every call
        for api, problem in problems.items():
            typer.echo(f"imgrec serve: {api}: {problem}", err=True)
        typer.echo("imgrec serve: fix the settings, or switch the engine off ([engines.<api>] enabled = false)",
                   err=True)
        raise typer.Exit(2)
    if config is not None:
        os.environ["IMGREC_CONFIG"] = str(config.resolve())  # uvicorn's worker processes load it again
    if settings.auth.token_secret is None:
        # Every worker must verify every token: share one secret through the environment.
        os.environ.setdefault("IMGREC_AUTH__TOKEN_SECRET", secrets.token_hex(32))
    if not settings.credentials and not settings.users and settings.auth.enabled:
        typer.echo("warning: no [[credentials]] or [[users]] configured: every API call will be refused", err=True)
    from .service.observability import configure_logging

    workers = workers or settings.service.workers
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # /metrics on any worker reports all of them (prometheus_client's multiprocess mode).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="imgrec-metrics-")
    configure_logging(settings.log.level, settings.log.format)
    uvicorn.run("imgrec.service.app:create_app", factory=True, host=host or settings.service.host,
                port=port or settings.service.port, workers=workers, log_level=settings.log.level,
                access_log=False, log_config=None, http="imgrec.service.protocol:GuardedHttpToolsProtocol",
                limit_concurrency=settings.service.max_connections, timeout_keep_alive=5)


server = typer.Typer(help="A local Prefect server kept running, so small runs start in seconds.",
                     no_args_is_help=True)
app.add_typer(server, name="server")


@server.command("start")
def server_start(port: int = typer.Option(4200, help="Port on 127.0.0.1"),
                 config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False)) -> None:
    """Start it in the background (or report the one already running)."""
    from .local_server import start

    url = start(load_settings(config).state_dir, port)
    typer.echo(f"Prefect server at {url} (UI: {url.removesuffix('/api')}); `imgrec run` uses it")


@server.command("stop")
def server_stop(config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False)) -> None:
    from .local_server import stop

    typer.echo("stopped" if stop(load_settings(config).state_dir) else "no server was running")


@server.command("status")
def server_status(config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False)) -> None:
    from .local_server import running_url

    url = running_url(load_settings(config).state_dir)
    typer.echo(f"running at {url}" if url else "not running")
    if not url:
        raise typer.Exit(1)


@app.command()
def sql(query: str = typer.Argument(..., help="SQL over the views: images, tags, detections, faces, "
                                             "main_objects, recapture, enhanced, errors, runs"),
        out: str = typer.Option("warehouse", help="The warehouse (imgrec run's --out): a folder or s3://..."),
        iceberg_catalog: Optional[str] = typer.Option(None, help="Iceberg tables: their catalog (imgrec run's "
                                                      "--iceberg-catalog; default the folder's SQLite file)"),
        csv: bool = typer.Option(False, "--csv", help="CSV instead of a table")) -> None:
    """Run a query on the warehouse (a folder's DuckDB file, refreshed first) and print the result."""
    import duckdb

    from .warehouse import open as open_warehouse

    try:
        frame = open_warehouse(out, iceberg_catalog=iceberg_catalog).sql(query)
    except (FileNotFoundError, duckdb.Error) as exc:
        typer.echo(f"imgrec sql: {exc}", err=True)
        raise typer.Exit(2)
    from .schemas.text import csv_cell, printable

    if csv:  # spreadsheet-safe: formula-like text cells start with an apostrophe, lists are JSON lists
        typer.echo(frame.map(csv_cell).to_csv(index=False), nl=False)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, never markup: a key such as "a[/b]x.jpg" or "[link=...]" prints as it is, control characters escaped
    table = Table()
    for column in frame.columns:
        table.add_column(Text(printable(column)))
    for row in frame.itertuples(index=False):
        table.add_row(*[Text("" if v is None else printable(csv_cell(v) if hasattr(v, "tolist") else v))
                        for v in row])
    Console(width=200).print(table)


@app.command()
def similar(image: str = typer.Argument(..., help="A key of the catalog (as the tables record it) or an image file"),
            out: str = typer.Option("warehouse", help="The warehouse (imgrec run's --out): a folder or s3://..."),
            top: int = typer.Option(10, min=1, max=1000, help="How many images to list"),
            csv: bool = typer.Option(False, "--csv", help="CSV: a header line key,similarity, then one row each"),
            config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                                  help="TOML settings file (its models fingerprint a file)")) -> None:
    """The catalog images most similar to one image, most similar first, one per line (similarity 0-1,
    then the key); the image itself is not listed."""
    from .schemas.errors import ApiError
    from .schemas.text import csv_cell, printable
    from .warehouse import open as open_warehouse

    try:
        found = open_warehouse(out).similar(image, top, config)
    except (FileNotFoundError, KeyError) as exc:
        typer.echo(f"imgrec similar: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2)
    except ApiError as exc:
        typer.echo(f"imgrec similar: {image}: {exc.code} {exc.message}", err=True)
        raise typer.Exit(2)
    if csv:
        typer.echo(found.map(csv_cell).to_csv(index=False), nl=False)
        return
    for key, similarity in found.itertuples(index=False):
        typer.echo(f"{similarity:.4f}  {printable(key)}")


from .cli_run import run as _run  # noqa: E402

app.command(name="run")(_run)


def main() -> None:  # pragma: no cover
    app()
