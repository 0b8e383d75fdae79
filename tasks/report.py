"""Run reports: JSON, Markdown and one self-contained HTML page (inline SVG charts), plus the `runs` row.

Figures come from the shard statistics and from the run's own rows read back with DuckDB, so the report
describes what actually landed in the tables.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from .job import Job
from .latency import LatencyHistogram
from .recognize import ShardStats
from .writing import table_file, write_table


def _query(out: Path, table: str, sql: str, run_id: str) -> list[tuple]:
    if not any((out / table).glob("run_date=*/*.parquet")):
        return []
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{out / table}/**/*.parquet', hive_partitioning=true)")
        return con.execute(sql, [run_id]).fetchall()
    finally:
        con.close()


def summarize(job: Job, listed: int, shards: list[ShardStats], finished_at: datetime,
              unit_price: float = 0.0) -> dict[str, Any]:
    status: Counter = Counter()
    codes: Counter = Counter()
    latency = LatencyHistogram()
    calls = errors = retries = 0
    wait = 0.0
    for s in shards:
        status.update(s.status)
        codes.update(s.error_codes)
        latency.merge(s.latency)
        calls += s.calls
        errors += s.call_errors
        retries += s.retries
        wait += s.rate_wait_s
    duration = max((finished_at - job.started_at).total_seconds(), 1e-9)
    processed = status["ok"] + status["failed"] + status["invalid"]
    out = job.out_path
    top_tags = _query(out, "tags", "SELECT coalesce(tag_en, tag), count(*) AS n FROM t WHERE run_id = ? "
                      "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 15", job.run_id)
    verdicts = _query(out, "recapture", "SELECT suggestion, count(*) FROM t WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC",
                      job.run_id)
    faces = _query(out, "faces", "SELECT label, count(*) FROM t WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC LIMIT 15",
                   job.run_id)
    return {
        "run_id": job.run_id, "flow": job.flow, "source": job.source, "backend": job.backend,
        "apis": job.apis, "parameters": job.public_parameters(),
        "started_at": job.started_at.isoformat(), "finished_at": finished_at.isoformat(),
        "duration_s": round(duration, 3), "listed": listed,
        "status": {k: status.get(k, 0) for k in ("ok", "failed", "invalid", "skipped")},
        "processed": processed, "calls": calls, "call_errors": errors, "retries": retries,
        "rate_limit_wait_s": round(wait, 3), "images_per_s": round(processed / duration, 3),
        "latency_ms": {"p50": latency.percentile(0.5), "p95": latency.percentile(0.95),
                       "max": latency.max_ms if latency.count else None, "mean": latency.mean()},
        "latency_bars": latency.bars(),
        "error_codes": dict(codes.most_common()),
        "top_tags": [[t, n] for t, n in top_tags], "recapture_verdicts": [[v, n] for v, n in verdicts],
        "faces": [[f, n] for f, n in faces],
        "estimated_cost": round(calls * unit_price, 6),
        "shards": len(shards),
    }


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


def write_runs_row(job: Job, summary: dict[str, Any]) -> Path:
    path = table_file(job.out_path, "runs", job.run_date, job.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    write_table(tmp, "runs", [runs_row(summary)])
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------ rendering
def markdown(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"# imgrec run `{s['run_id']}`", "",
        f"- flow: **{s['flow']}**, source: `{s['source']}`, backend: **{s['backend']}**, APIs: {', '.join(s['apis']) or '-'}",
        f"- started {s['started_at']}, took {s['duration_s']} s, {s['images_per_s']} images/s",
        f"- listed {s['listed']}; ok {s['status']['ok']}, failed {s['status']['failed']}, "
        f"invalid {s['status']['invalid']}, skipped {s['status']['skipped']}",
        f"- calls {s['calls']} ({s['call_errors']} failed, {s['retries']} retries), rate-limit wait "
        f"{s['rate_limit_wait_s']} s, estimated cost {s['estimated_cost']}",
        f"- latency p50 {_ms(s['latency_ms']['p50'])}, p95 {_ms(s['latency_ms']['p95'])}", "",
    ]
    for title, pairs in (("Error codes", list(s["error_codes"].items())), ("Top tags", s["top_tags"]),
                         ("Recapture verdicts", s["recapture_verdicts"]), ("Faces", s["faces"])):
        if pairs:
            lines += [f"## {title}", "", "| value | count |", "|---|---|"]
            lines += [f"| {html.escape(str(k))} | {v} |" for k, v in pairs]
            lines.append("")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _bar_chart(title: str, pairs: list[tuple[str, float]], colour: str = "#3b82f6") -> str:
    if not pairs:
        return f"<section><h2>{html.escape(title)}</h2><p class='empty'>nothing to show</p></section>"
    width, bar_h, label_w = 640, 22, 200
    peak = max(v for _, v in pairs) or 1
    rows = []
    for i, (label, value) in enumerate(pairs):
        y = i * (bar_h + 6)
        w = max(1, (width - label_w - 60) * value / peak)
        rows.append(f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end'>{html.escape(str(label))[:32]}</text>"
                    f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{colour}'/>"
                    f"<text x='{label_w + w + 6:.1f}' y='{y + 16}'>{value:g}</text>")
    height = len(pairs) * (bar_h + 6)
    return (f"<section><h2>{html.escape(title)}</h2><svg role='img' aria-label='{html.escape(title)}' "
            f"width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{''.join(rows)}</svg></section>")


def render_html(summary: dict[str, Any]) -> str:
    s = summary
    status = [(k, v) for k, v in s["status"].items()]
    charts = [
        _bar_chart("Images by status", status, "#10b981"),
        _bar_chart("Error codes", list(s["error_codes"].items()), "#ef4444"),
        _bar_chart("Latency distribution", s["latency_bars"], "#6366f1"),
        _bar_chart("Top tags", [(t, n) for t, n in s["top_tags"]], "#3b82f6"),
        _bar_chart("Recapture verdicts", [(v, n) for v, n in s["recapture_verdicts"]], "#f59e0b"),
        _bar_chart("Recognised faces", [(f, n) for f, n in s["faces"]], "#8b5cf6"),
    ]
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in [
        ("run", s["run_id"]), ("flow", s["flow"]), ("source", s["source"]), ("backend", s["backend"]),
        ("APIs", ", ".join(s["apis"])), ("started", s["started_at"]), ("duration", f"{s['duration_s']} s"),
        ("listed", s["listed"]), ("throughput", f"{s['images_per_s']} images/s"),
        ("calls", f"{s['calls']} ({s['call_errors']} failed, {s['retries']} retries)"),
        ("rate-limit wait", f"{s['rate_limit_wait_s']} s"),
        ("latency p50 / p95", f"{_ms(s['latency_ms']['p50'])} / {_ms(s['latency_ms']['p95'])}"),
        ("estimated cost", s["estimated_cost"])])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imgrec run {html.escape(s['run_id'])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #111; max-width: 960px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
svg text {{ font: 12px system-ui, sans-serif; fill: #222; }} .empty {{ color: #777; }}
section {{ margin-bottom: 1.5rem; }}
</style></head><body>
<h1>imgrec run report</h1>
<table>{facts}</table>
{''.join(charts)}
</body></html>
"""


def write_report(job: Job, summary: dict[str, Any]) -> dict[str, Path]:
    folder = job.out_path / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / f"{job.run_id}.json", "md": folder / f"{job.run_id}.md",
             "html": folder / f"{job.run_id}.html"}
    paths["json"].write_text(json.dumps(summary, indent=2, default=str))
    paths["md"].write_text(markdown(summary))
    paths["html"].write_text(render_html(summary))
    return paths


def publish_artifacts(summary: dict[str, Any]) -> None:
    """The same report as Prefect artifacts (markdown + table), visible in the Prefect UI."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = "imgrec-run-report"
    create_markdown_artifact(markdown(summary), key=key, description=f"imgrec run {summary['run_id']}")
    rows = [{"status": k, "images": v} for k, v in summary["status"].items()]
    rows += [{"status": f"error {code}", "images": n} for code, n in summary["error_codes"].items()]
    create_table_artifact(rows, key="imgrec-run-status", description="images by status and error code")
