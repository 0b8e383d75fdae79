"""Operability: Prometheus metrics and structured logs that carry the request id.

Metrics (GET /metrics, Prometheus text format):
  imgrec_requests_total{api, status}           requests answered
  imgrec_errors_total{api, code}               error answers by the reference's code
  imgrec_request_duration_seconds{api}         latency histogram
With several worker processes, `imgrec serve` points PROMETHEUS_MULTIPROC_DIR at a shared folder so that
/metrics on any worker reports the whole service.
"""
from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

request_id_var: ContextVar[str] = ContextVar("imgrec_request_id", default="-")
_registry = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("imgrec_requests_total", "Requests answered", ["api", "status"], registry=_registry)
ERRORS = Counter("imgrec_errors_total", "Error answers by error code", ["api", "code"], registry=_registry)
FAULTS = Counter("imgrec_faults_injected_total", "Faults injected (test mode)", ["kind"], registry=_registry)
LATENCY = Histogram("imgrec_request_duration_seconds", "Request latency", ["api"], registry=_registry,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def observe(api: str, status: int, code: str | None, seconds: float) -> None:
    REQUESTS.labels(api, str(status)).inc()
    LATENCY.labels(api).observe(seconds)
    if code:
        ERRORS.labels(api, code).inc()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(_registry), CONTENT_TYPE_LATEST


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", "-")}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    from ..logs import install

    install()  # secrets redacted from every record, ours and the libraries'
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
