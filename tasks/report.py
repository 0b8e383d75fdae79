"""Run reports: JSON, Markdown and one self-contained HTML page (inline SVG charts, the per-image table and a
contact sheet of thumbnails with filters), plus the `runs` row.

Figures come from the shard statistics and from the run's own rows read back with DuckDB, so the report
describes what actually landed in the tables. The pages are jinja2 templates (`templates/`), autoescaped.
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from datetime import datetime
from typing import Any

from imgrec.schemas.recapture_detect import RECAPTURED
from imgrec.schemas.text import markdown_cell

from .gallery import gallery, group_sheet
from .job import Job
from .latency import LatencyHistogram
from .shard_worker import ShardStats
from .formats import RUN_TABLE, format_of, query_run
from .formats.parquet import parquet_bytes


REPORT_IMAGES = 200  # per-image rows in a report: problems first, then by key
STATUS_COLOURS = {"ok": "#10b981", "invalid": "#f59e0b", "failed": "#ef4444", "skipped": "#9ca3af"}


class RunFailed(RuntimeError):
    """The run completed, but too many of its images failed for it to count as done (a wrong key, the
    service down): the CLI exits non-zero and the Prefect flow run ends Failed. Carries the summary."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)  # args: the one line only (a log of the exception must not print the report)
        self.summary = summary

    def __reduce__(self):  # pickled between processes with its summary
        return (type(self), (str(self), self.summary))

    def __str__(self) -> str:
        return str(self.args[0])


def failure_of(summary: dict[str, Any], max_failed_share: float) -> RunFailed | None:
    """A RunFailed naming the dominant error code when more than `max_failed_share` of the processed
    images failed (all of them, with 1.0); None for a run that counts as done."""
    failed, processed = summary["status"]["failed"], summary["processed"]
    if not processed or not failed or failed / processed <= max_failed_share and failed < processed:
        return None
    code, count = next(iter(summary["error_codes"].items()), ("?", 0))
    reports = summary.get("report_paths", {})
    return RunFailed(f"{failed} of {processed} images failed; most often {code} ({count} times)"
                     + (f"; report: {reports['md']}" if "md" in reports else ""), summary)


def passed_over(listed) -> str:
    """What the listing passed over, for people: `3 not images by name, 2 excluded by --include/--exclude`."""
    parts = [f"{listed.not_images} not images by name" if listed.not_images else "",
             f"{listed.excluded} excluded by --include/--exclude" if listed.excluded else "",
             f"{listed.out_of_range} outside --since/--until" if listed.out_of_range else ""]
    return ", ".join(p for p in parts if p)


def plan_summary(job: Job, listed, shards) -> dict[str, Any]:
    """A dry run's answer: what the run would list, call and cost."""
    calls: Counter = Counter()
    for shard in shards:
        calls.update(shard.calls_by_api)
    with_work = sum(s.objects for s in shards if s.pending_calls or s.fingerprints)
    return {
        "dry_run": True, "run_id": job.run_id, "source": job.source, "out": job.out, "listed": listed.listed,
        "passed_over": passed_over(listed), "images_with_work": with_work,
        "images_unchanged": listed.listed - with_work,
        "shards": sum(1 for s in shards if s.pending_calls or s.fingerprints),
        "calls": {api: calls.get(api, 0) for api in job.apis}, "fingerprints": sum(s.fingerprints for s in shards),
        "unit_prices": {api: job.unit_price(api) for api in job.apis},
        "estimated_cost": estimated_cost(job, calls), "priced": any(job.unit_price(api) for api in job.apis),
    }


def plan_line(plan: dict[str, Any]) -> str:
    calls = ", ".join(f"{api} {n}" for api, n in plan["calls"].items())
    cost = (f"estimated cost {plan['estimated_cost']:g}" if plan["priced"] else
            "cost not estimated: set --unit-price or [pipeline] unit_prices")
    return (f"{plan['listed']} listed ({plan['images_with_work']} with work, {plan['images_unchanged']} unchanged), "
            f"{plan['shards']} shards, calls: {calls or 'none'}; {cost}")


def plan_text(plan: dict[str, Any]) -> str:
    """A dry run's answer as the CLI prints it: one line per figure, one per API."""
    lines = [f"dry run of {plan['source']} -> {plan['out']}: nothing called, nothing written",
             f"listed: {plan['listed']}" + (f" ({plan['passed_over']} passed over)" if plan["passed_over"] else ""),
             f"images with work: {plan['images_with_work']} in {plan['shards']} shards; unchanged: "
             f"{plan['images_unchanged']}"]
    for api, n in plan["calls"].items():
        price = plan["unit_prices"][api]
        lines.append(f"  {api}: {n} calls" + (f" x {price:g} = {round(n * price, 6):g}" if price else ""))
    if plan.get("fingerprints"):
        lines.append(f"  fingerprints for near-duplicates: {plan['fingerprints']} (made locally, no call)")
    lines.append(f"estimated cost: {plan['estimated_cost']:g}" if plan["priced"] else
                 "estimated cost: not estimated (no unit price: --unit-price, or [pipeline] unit_prices per API)")
    return "\n".join(lines)


def estimated_cost(job: Job, calls_by_api: dict[str, int]) -> float:
    """Calls times each API's unit price (RunParameters.unit_prices, else unit_price_per_call; 0 unset)."""
    return round(sum(n * job.unit_price(api) for api, n in calls_by_api.items()), 6)


def summarize(job: Job, listed: int, shards: list[ShardStats], finished_at: datetime) -> dict[str, Any]:
    status: Counter = Counter()
    codes: Counter = Counter()
    latency = LatencyHistogram()
    calls = errors = retries = 0
    by_api: Counter = Counter()
    saved: Counter = Counter()
    wait = 0.0
    for s in shards:
        status.update(s.status)
        by_api.update(s.calls_by_api)
        saved.update(s.saved_by_api)
        codes.update(s.error_codes)
        latency.merge(s.latency)
        calls += s.calls
        errors += s.call_errors
        retries += s.retries
        wait += s.rate_wait_s
    duration = max((finished_at - job.started_at).total_seconds(), 1e-9)
    processed = status["ok"] + status["failed"] + status["invalid"]
    # Images per tag, not calls: three tagging APIs naming "person" on one photo count it once.
    top_tags = query_run(job, "tags", f"SELECT coalesce(tag_en, tag), count(DISTINCT key) AS n FROM {RUN_TABLE} "
                         "WHERE run_id = $run_id GROUP BY 1 ORDER BY n DESC, 1 LIMIT 15")
    verdicts = query_run(job, "recapture", f"SELECT suggestion, count(*) FROM {RUN_TABLE} WHERE run_id = $run_id "
                         "GROUP BY 1 ORDER BY 2 DESC")
    faces = query_run(job, "faces", f"SELECT label, count(*) FROM {RUN_TABLE} WHERE run_id = $run_id "
                      "GROUP BY 1 ORDER BY 2 DESC LIMIT 15")
    return {
        "run_id": job.run_id, "flow": job.flow, "source": job.source, "backend": job.backend,
        "apis": job.apis, "parameters": job.public_parameters(),
        "started_at": job.started_at.isoformat(), "finished_at": finished_at.isoformat(),
        "duration_s": round(duration, 3), "listed": listed,
        "status": {k: status.get(k, 0) for k in ("ok", "failed", "invalid", "skipped")},
        "processed": processed, "calls": calls, "call_errors": errors, "retries": retries,
        "calls_saved": sum(saved.values()), "calls_saved_by_api": dict(saved),
        "rate_limit_wait_s": round(wait, 3), "images_per_s": round(processed / duration, 3),
        "latency_ms": {"p50": latency.percentile(0.5), "p95": latency.percentile(0.95),
                       "max": latency.max_ms if latency.count else None, "mean": latency.mean()},
        "latency_bars": latency.bars(),
        "error_codes": dict(codes.most_common()),
        "top_tags": [[t, n] for t, n in top_tags],
        "recapture_verdicts": [[f"recaptured: {RECAPTURED.get(v, v)} ({v})", n] for v, n in verdicts],
        "faces": [[f, n] for f, n in faces],
        "images": per_image(job),
        "estimated_cost": estimated_cost(job, by_api),
        "shards": len(shards),
    }


def per_image(job: Job) -> list[dict[str, Any]]:
    """Up to REPORT_IMAGES images of the run, failed and invalid first: each API's outcome ("ok" or its error
    code) with the error messages, and the image's best tags."""
    images = query_run(job, "images", f"SELECT key, status FROM {RUN_TABLE} WHERE run_id = $run_id ORDER BY "
                       "CASE status WHEN 'failed' THEN 0 WHEN 'invalid' THEN 1 WHEN 'ok' THEN 2 ELSE 3 END, key "
                       f"LIMIT {REPORT_IMAGES}")
    if not images:
        return []
    keys = [key for key, _ in images]
    errors: dict[str, dict[str, tuple[str, str]]] = {}
    for key, api, code, message in query_run(job, "errors", f"SELECT key, api, error_code, error_msg FROM {RUN_TABLE} "
            "WHERE run_id = $run_id AND list_contains($keys, key)", keys=keys):
        errors.setdefault(key, {})[api] = (code or "", message or "")
    # in the APIs' own order (recognised things first, pixel measures after), the best rank any API gave
    tags = dict(query_run(job, "tags", "SELECT key, list(name ORDER BY first, best DESC)[1:6] FROM (SELECT key, "
        f"coalesce(tag_en, tag) AS name, min(rank) AS first, max(confidence) AS best FROM {RUN_TABLE} "
        "WHERE run_id = $run_id AND list_contains($keys, key) GROUP BY 1, 2) GROUP BY key", keys=keys))
    rows = []
    for key, status in images:
        failed = errors.get(key, {})
        grouped: dict[tuple[str, str], list[str]] = {}  # one line per distinct error, naming its APIs
        for api, error in sorted(failed.items()):
            grouped.setdefault(error, []).append(api)
        rows.append({"key": key, "status": status,
                     "outcomes": {api: failed[api][0] if api in failed else "ok" for api in job.apis},
                     "errors": [["every API" if len(apis) == len(job.apis) > 1 else ", ".join(apis), code, message]
                                for (code, message), apis in grouped.items()],
                     "tags": list(tags.get(key, []))})
    return rows


def runs_row(summary: dict[str, Any]) -> dict[str, Any]:
    status = summary["status"]
    return {
        "run_id": summary["run_id"], "flow": summary["flow"], "source": summary["source"],
        "backend": summary["backend"], "parameters": json.dumps(summary["parameters"], sort_keys=True),
        "started_at": datetime.fromisoformat(summary["started_at"]),
        "finished_at": datetime.fromisoformat(summary["finished_at"]), "duration_s": summary["duration_s"],
        "listed": summary["listed"], "images_ok": status["ok"], "images_failed": status["failed"],
        "images_invalid": status["invalid"], "images_skipped": status["skipped"], "calls": summary["calls"],
        "call_errors": summary["call_errors"], "retries": summary["retries"],
        "rate_limit_wait_s": summary["rate_limit_wait_s"], "images_per_s": summary["images_per_s"],
        "latency_p50_ms": summary["latency_ms"]["p50"], "latency_p95_ms": summary["latency_ms"]["p95"],
        "estimated_cost": summary["estimated_cost"],
    }


def write_runs_row(job: Job, summary: dict[str, Any]) -> None:
    """The run's row of `runs`, in the run's table format (idempotent, like a shard's)."""
    format_of(job).append("runs", job.run_date, job.run_id, parquet_bytes("runs", [runs_row(summary)]))


# ------------------------------------------------------------------------------------------ rendering
@functools.cache
def _templates():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("imgrec.tasks", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"], default=False),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["ms"] = lambda value: "-" if value is None else f"{value:.1f} ms"
    env.filters["md"] = markdown_cell  # keys and messages stay text: no links, HTML, escapes or extra columns
    return env


def markdown(summary: dict[str, Any]) -> str:
    return _templates().get_template("report.md.j2").render(s=summary, sections=_sections(summary))


def _sections(summary: dict[str, Any]) -> list[tuple[str, list]]:
    s = summary
    return [("Error codes", list(s["error_codes"].items())), ("Top tags", s["top_tags"]),
            ("Recapture verdicts", s["recapture_verdicts"]), ("Faces", s["faces"])]


def _bar_chart(title: str, pairs: list, colour: str, colours: dict[str, str] | None = None) -> dict[str, Any]:
    """Geometry of one horizontal bar chart (`colours` per label, else `colour`); the template draws it as
    inline SVG."""
    width, bar_h, label_w = 640, 22, 200
    peak = max((v for _, v in pairs), default=0) or 1
    bars = [{"label": str(label)[:32], "value": f"{value:g}", "y": i * (bar_h + 6),
             "w": round(max(1, (width - label_w - 60) * value / peak), 1),
             "colour": (colours or {}).get(str(label), colour)} for i, (label, value) in enumerate(pairs)]
    return {"title": title, "colour": colour, "bars": bars, "width": width, "height": len(pairs) * (bar_h + 6),
            "bar_h": bar_h, "label_w": label_w}


def render_html(summary: dict[str, Any], cards: list[dict[str, Any]] | None = None,
                groups: list[list[dict[str, Any]]] | None = None) -> str:
    """The page; `cards` is the contact sheet (gallery.gallery), `groups` the near-duplicate groups'
    thumbnails (gallery.group_sheet), each left out when None."""
    s = summary
    charts = [
        _bar_chart("Images by status", list(s["status"].items()), "#10b981", STATUS_COLOURS),
        _bar_chart("Error codes", list(s["error_codes"].items()), "#ef4444"),
        _bar_chart("Latency distribution", s["latency_bars"], "#6366f1"),
        _bar_chart("Top tags", s["top_tags"], "#3b82f6"),
        _bar_chart("Recapture verdicts", s["recapture_verdicts"], "#f59e0b"),
        _bar_chart("Recognised faces", s["faces"], "#8b5cf6"),
    ]
    tags = sorted({tag for card in cards or [] for tag in card["tags"]})
    return _templates().get_template("report.html.j2").render(s=s, charts=charts, colours=STATUS_COLOURS,
                                                              cards=cards or [], tags=tags, groups=groups or [])


def write_report(job: Job, summary: dict[str, Any]) -> dict[str, str]:
    """reports/<run_id>.json, .md and .html in the output; returns where they are (a path, or s3://...)."""
    pages = {"json": json.dumps(summary, indent=2, default=str), "md": markdown(summary),
             "html": render_html(summary, gallery(job, summary.get("images", [])),
                                 group_sheet(job, (summary.get("near_duplicates") or {}).get("groups", [])))}
    where = {}
    for kind, text in pages.items():
        name = f"reports/{job.run_id}.{kind}"
        job.output.put(name, text.encode())
        where[kind] = str(job.output.local_root / name) if job.output.local_root else job.output.uri_of(name)
    return where


def publish_artifacts(summary: dict[str, Any]) -> None:
    """The same report as Prefect artifacts (markdown + table), visible in the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = "imgrec-run-report"
    create_markdown_artifact(markdown(summary), key=key, description=f"imgrec run {summary['run_id']}")
    rows = [{"status": k, "images": v} for k, v in summary["status"].items()]
    rows += [{"status": f"error {code}", "images": n} for code, n in summary["error_codes"].items()]
    create_table_artifact(rows, key="imgrec-run-status", description="images by status and error code")
